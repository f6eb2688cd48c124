//! `plumbline.v1.SourceService`: the trackers plumbline reads from and the
//! rules that link their items to hypotheses.

use std::sync::Arc;

use tonic::{Request, Response};

use super::Reply;
use super::convert::{self, require_id, required};
use super::page::{self, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageToken};
use crate::domain;
use crate::engine::Engine;
use crate::proto as pb;

/// `plumbline.v1.SourceService`.
#[derive(Clone)]
pub struct SourceApi(pub Arc<Engine>);

#[tonic::async_trait]
impl pb::source_service_server::SourceService for SourceApi {
    async fn create_source(
        &self,
        req: Request<pb::CreateSourceRequest>,
    ) -> Reply<pb::CreateSourceResponse> {
        let s =
            convert::source_from_pb(required("source", req.get_ref().source.as_ref())?, "source")?;
        let s = self.0.create_source(s).await?;
        Ok(Response::new(pb::CreateSourceResponse {
            source: Some(convert::source_to_pb(&s)),
        }))
    }

    async fn get_source(&self, req: Request<pb::GetSourceRequest>) -> Reply<pb::GetSourceResponse> {
        require_id("id", &req.get_ref().id)?;
        let s = self.0.get_source(&req.get_ref().id)?;
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
        let ix = self.0.read();
        let (page, next) =
            page::paginate(ix.sources(), |s| s.id.clone(), token, "ListSources", size);
        Ok(Response::new(pb::ListSourcesResponse {
            sources: page.into_iter().map(convert::source_to_pb).collect(),
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
        let s = self
            .0
            .update_source(&incoming.id, |s| {
                let mut p = convert::source_to_pb(s);
                convert::apply_mask(
                    &mut p,
                    incoming,
                    r.update_mask.as_ref(),
                    &[
                        "kind",
                        "base_url",
                        "project_key",
                        "token_env",
                        "link_rules",
                        "estimate_field",
                    ],
                    |p, i, f| match f {
                        "kind" => p.kind = i.kind,
                        "base_url" => p.base_url = i.base_url.clone(),
                        "project_key" => p.project_key = i.project_key.clone(),
                        "token_env" => p.token_env = i.token_env.clone(),
                        "link_rules" => p.link_rules = i.link_rules.clone(),
                        _ => p.estimate_field = i.estimate_field.clone(),
                    },
                )?;
                let updated = convert::source_from_pb(&p, "source")?;
                *s = domain::Source {
                    create_time: s.create_time,
                    ..updated
                };
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::UpdateSourceResponse {
            source: Some(convert::source_to_pb(&s)),
        }))
    }

    async fn delete_source(
        &self,
        req: Request<pb::DeleteSourceRequest>,
    ) -> Reply<pb::DeleteSourceResponse> {
        let r = req.get_ref();
        require_id("id", &r.id)?;
        let n = self.0.delete_source(&r.id, r.force).await?;
        Ok(Response::new(pb::DeleteSourceResponse {
            deleted_item_count: n as i64,
        }))
    }
}
