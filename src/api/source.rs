//! `plumbline.v1.SourceService`: the trackers plumbline reads from and the
//! rules that link their items to hypotheses.

use std::sync::Arc;

use tonic::{Request, Response};

use super::Reply;
use super::convert::{self, require_id, required};
use super::mask::{MaskField, fields_to_update};
use super::page::{self, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageToken};
use super::sync::sync_status;
use crate::domain;
use crate::engine::Engine;
use crate::proto as pb;
use crate::sync::Syncer;

/// `plumbline.v1.SourceService`. It holds the syncer, not only the engine:
/// adding a source, or changing its credentials, asks the tracker who the
/// key is, where the tracker would otherwise answer a rejected key as its
/// anonymous user ([`crate::sync::identity`]).
#[derive(Clone)]
pub struct SourceApi(pub Arc<Syncer>);

impl SourceApi {
    fn engine(&self) -> &Engine {
        self.0.engine()
    }
}

#[tonic::async_trait]
impl pb::source_service_server::SourceService for SourceApi {
    async fn create_source(
        &self,
        req: Request<pb::CreateSourceRequest>,
    ) -> Reply<pb::CreateSourceResponse> {
        let s =
            convert::source_from_pb(required("source", req.get_ref().source.as_ref())?, "source")?;
        if self.engine().get_source(&s.id).is_ok() {
            // Before asking the tracker: the answer would be the same.
            return Err(crate::engine::Error::AlreadyExists(format!(
                "source {} already exists",
                crate::engine::quote(&s.id)
            ))
            .into());
        }
        let warnings = self.0.check_new_source(&s).await.map_err(sync_status)?;
        let s = self.engine().create_source(s).await?;
        Ok(Response::new(pb::CreateSourceResponse {
            source: Some(convert::source_to_pb(&s)),
            warnings,
        }))
    }

    async fn get_source(&self, req: Request<pb::GetSourceRequest>) -> Reply<pb::GetSourceResponse> {
        require_id("id", &req.get_ref().id)?;
        let s = self.engine().get_source(&req.get_ref().id)?;
        Ok(Response::new(pb::GetSourceResponse {
            source: Some(convert::source_to_pb(&s)),
        }))
    }

    async fn list_sources(
        &self,
        req: Request<pb::ListSourcesRequest>,
    ) -> Reply<pb::ListSourcesResponse> {
        let r = req.get_ref();
        let size = page::page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let token = PageToken::decode(&r.page_token, "ListSources")?;
        let (page, next) = page::paginate(
            |after, limit| self.engine().list_sources(after, limit),
            |s| s.id.clone(),
            token,
            "ListSources",
            size,
        );
        Ok(Response::new(pb::ListSourcesResponse {
            sources: page.iter().map(convert::source_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn update_source(
        &self,
        req: Request<pb::UpdateSourceRequest>,
    ) -> Reply<pb::UpdateSourceResponse> {
        let r = req.get_ref();
        let incoming = required("source", r.source.as_ref())?;
        require_id("source.id", &incoming.id)?;
        let fields = fields_to_update(incoming, r.update_mask.as_ref(), source_field_set)?;
        let apply = |s: &mut domain::Source| -> crate::engine::Result<()> {
            let mut p = convert::source_to_pb(s);
            for f in &fields {
                copy_source_field(&mut p, incoming, *f);
            }
            let updated = convert::source_from_pb(&p, "source")?;
            // A push source's items come from its integration, a tracker
            // source's from the tracker (whose first full sync would mark
            // every pushed item removed), and a push source has no sync
            // history or cursor to carry: the two do not turn into each other.
            if (s.kind == domain::TrackerKind::Push) != (updated.kind == domain::TrackerKind::Push)
            {
                return Err(crate::engine::Error::invalid(
                    "source.kind",
                    "a push source cannot become a tracker source, nor a tracker source a push \
                     source; create a new source instead",
                ));
            }
            *s = domain::Source {
                create_time: s.create_time,
                ..updated
            };
            Ok(())
        };
        // New credentials (tracker, URL or token variable) are checked with
        // the tracker before they are stored.
        let before = self.engine().get_source(&incoming.id)?;
        let mut after = before.clone();
        apply(&mut after)?;
        let warnings = if (after.kind, &after.base_url, &after.token_env)
            != (before.kind, &before.base_url, &before.token_env)
        {
            self.0.check_new_source(&after).await.map_err(sync_status)?
        } else {
            Vec::new()
        };
        let s = self.engine().update_source(&incoming.id, apply).await?;
        Ok(Response::new(pb::UpdateSourceResponse {
            source: Some(convert::source_to_pb(&s)),
            warnings,
        }))
    }

    async fn delete_source(
        &self,
        req: Request<pb::DeleteSourceRequest>,
    ) -> Reply<pb::DeleteSourceResponse> {
        let r = req.get_ref();
        require_id("id", &r.id)?;
        let n = self.engine().delete_source(&r.id, r.force).await?;
        Ok(Response::new(pb::DeleteSourceResponse {
            deleted_item_count: n as i64,
        }))
    }
}

/// The fields of a Source that UpdateSource writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceField {
    Kind,
    BaseUrl,
    ProjectKey,
    TokenEnv,
    LinkRules,
    EstimateField,
}

impl MaskField for SourceField {
    const PATHS: &'static [(&'static str, Self)] = &[
        ("kind", SourceField::Kind),
        ("base_url", SourceField::BaseUrl),
        ("project_key", SourceField::ProjectKey),
        ("token_env", SourceField::TokenEnv),
        ("link_rules", SourceField::LinkRules),
        ("estimate_field", SourceField::EstimateField),
    ];
}

fn source_field_set(p: &pb::Source, f: SourceField) -> bool {
    match f {
        SourceField::Kind => p.kind != 0,
        SourceField::BaseUrl => !p.base_url.is_empty(),
        SourceField::ProjectKey => !p.project_key.is_empty(),
        SourceField::TokenEnv => !p.token_env.is_empty(),
        SourceField::LinkRules => p.link_rules.is_some(),
        SourceField::EstimateField => !p.estimate_field.is_empty(),
    }
}

fn copy_source_field(p: &mut pb::Source, i: &pb::Source, f: SourceField) {
    match f {
        SourceField::Kind => p.kind = i.kind,
        SourceField::BaseUrl => p.base_url = i.base_url.clone(),
        SourceField::ProjectKey => p.project_key = i.project_key.clone(),
        SourceField::TokenEnv => p.token_env = i.token_env.clone(),
        SourceField::LinkRules => p.link_rules = i.link_rules.clone(),
        SourceField::EstimateField => p.estimate_field = i.estimate_field.clone(),
    }
}
