//! `plumbline.v1.ScoringService`: an item's score with its explanation, one
//! page of a ranking, and a watched top N (see [`super::watch`]).

use std::sync::Arc;

use chrono::Utc;
use tonic::{Request, Response};

use super::Reply;
use super::convert;
use super::page::{self, MAX_PAGE_SIZE, PageToken};
use super::ranking::{rank_order, ranked_items};
use crate::engine::{Engine, Error};
use crate::index::{OrdF64, RankQuery};
use crate::proto as pb;

/// `plumbline.v1.ScoringService`.
#[derive(Clone)]
pub struct ScoringApi(pub Arc<Engine>);

/// Default and maximum page sizes of `RankItems`.
const DEFAULT_RANK_SIZE: usize = 50;

#[tonic::async_trait]
impl pb::scoring_service_server::ScoringService for ScoringApi {
    async fn get_item_score(
        &self,
        req: Request<pb::GetItemScoreRequest>,
    ) -> Reply<pb::GetItemScoreResponse> {
        let key = &req.get_ref().item_key;
        if key.is_empty() {
            return Err(Error::invalid("item_key", "is required").into());
        }
        let ix = self.0.read();
        let (Some(facts), Some(score)) = (ix.item(key), ix.score(key)) else {
            return Err(Error::NotFound(format!("item {key:?} not found")).into());
        };
        Ok(Response::new(pb::GetItemScoreResponse {
            score: Some(convert::score_to_pb(
                key,
                &facts.title,
                score,
                &convert::StaleMetrics::new(&ix, Utc::now()),
                true,
            )),
        }))
    }

    type WatchRankingStream = super::watch::RankingStream;

    async fn watch_ranking(
        &self,
        req: Request<pb::WatchRankingRequest>,
    ) -> Reply<Self::WatchRankingStream> {
        let stream = super::watch::watch_ranking(self.0.clone(), req.into_inner())?;
        Ok(Response::new(stream))
    }

    async fn rank_items(&self, req: Request<pb::RankItemsRequest>) -> Reply<pb::RankItemsResponse> {
        let r = req.get_ref();
        let size = page::page_size(r.page_size, DEFAULT_RANK_SIZE, MAX_PAGE_SIZE)?;
        let order = rank_order(r.order)?;
        let full = match pb::ScoreView::try_from(r.view) {
            Ok(pb::ScoreView::Unspecified | pb::ScoreView::Basic) => false,
            Ok(pb::ScoreView::Full) => true,
            Err(_) => return Err(Error::invalid("view", "is not a known view").into()),
        };
        let fingerprint = format!(
            "RankItems|{:?}|{}|{}|{}",
            order, r.source_id, r.label, r.include_closed
        );
        let token = PageToken::decode(&r.page_token, &fingerprint)?;
        let (after, rank_before) = match token {
            Some(t) => {
                let bits =
                    t.v.ok_or_else(|| Error::invalid("page_token", "not a ranking page token"))?;
                (
                    Some((std::cmp::Reverse(OrdF64(f64::from_bits(bits))), t.k)),
                    t.r,
                )
            }
            None => (None, 0),
        };
        let query = RankQuery {
            source_id: (!r.source_id.is_empty()).then(|| r.source_id.clone()),
            label: (!r.label.is_empty()).then(|| r.label.clone()),
            include_closed: r.include_closed,
            after,
            limit: size + 1,
        };
        let ix = self.0.read();
        let mut ranked = ix.rank(order, &query);
        let more = ranked.len() > size;
        ranked.truncate(size);
        let now = Utc::now();
        let next = match (more, ranked.last()) {
            (true, Some(((std::cmp::Reverse(OrdF64(v)), k), _))) => PageToken {
                q: fingerprint,
                k: k.clone(),
                v: Some(v.to_bits()),
                r: rank_before + ranked.len() as u32,
            }
            .encode(),
            _ => String::new(),
        };
        Ok(Response::new(pb::RankItemsResponse {
            items: ranked_items(&ix, &ranked, rank_before as usize, full, now),
            next_page_token: next,
        }))
    }
}
