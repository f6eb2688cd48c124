//! `plumbline.v1.InsightService`: customer evidence recorded, listed and
//! erased per customer. Validation names `insights[i].field`, so that a
//! file import can point at the line of every bad insight.

use std::sync::Arc;

use chrono::Utc;
use tonic::{Request, Response};

use super::Reply;
use super::convert::{Check, importance_to_pb, timestamp};
use super::page::{self, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageToken};
use crate::domain::{Importance, Insight, InsightKind, MAX_INSIGHTS_PER_CALL};
use crate::engine::{Engine, Error, InsightFilter};
use crate::proto as pb;

/// `plumbline.v1.InsightService`.
#[derive(Clone)]
pub struct InsightApi(pub Arc<Engine>);

fn kind_from_pb(kind: i32) -> Option<InsightKind> {
    match pb::InsightKind::try_from(kind).ok()? {
        pb::InsightKind::Unspecified => None,
        pb::InsightKind::Quote => Some(InsightKind::Quote),
        pb::InsightKind::Ticket => Some(InsightKind::Ticket),
        pb::InsightKind::InterviewNote => Some(InsightKind::InterviewNote),
        pb::InsightKind::SurveyAnswer => Some(InsightKind::SurveyAnswer),
        pb::InsightKind::Vote => Some(InsightKind::Vote),
    }
}

fn kind_to_pb(kind: InsightKind) -> pb::InsightKind {
    match kind {
        InsightKind::Quote => pb::InsightKind::Quote,
        InsightKind::Ticket => pb::InsightKind::Ticket,
        InsightKind::InterviewNote => pb::InsightKind::InterviewNote,
        InsightKind::SurveyAnswer => pb::InsightKind::SurveyAnswer,
        InsightKind::Vote => pb::InsightKind::Vote,
    }
}

/// An importance from the wire: `Ok(None)` for UNSPECIFIED, `Err` for a
/// value this server does not know.
fn importance_from_pb(i: i32) -> Result<Option<Importance>, ()> {
    match pb::Importance::try_from(i).map_err(|_| ())? {
        pb::Importance::Unspecified => Ok(None),
        pb::Importance::NotImportant => Ok(Some(Importance::NotImportant)),
        pb::Importance::NiceToHave => Ok(Some(Importance::NiceToHave)),
        pb::Importance::Important => Ok(Some(Importance::Important)),
        pb::Importance::Critical => Ok(Some(Importance::Critical)),
    }
}

/// An insight from the wire, its wire-only problems (an unknown kind or
/// importance, a bad time) added to `c`; its own fields are checked by the
/// engine with [`Insight::problems`].
pub fn insight_from_pb(p: &pb::Insight, c: &mut Check) -> Insight {
    let kind = kind_from_pb(p.kind).unwrap_or_else(|| {
        c.fail(
            "kind",
            "is required: QUOTE, TICKET, INTERVIEW_NOTE, SURVEY_ANSWER or VOTE",
        );
        InsightKind::Quote
    });
    let importance = importance_from_pb(p.importance).unwrap_or_else(|()| {
        c.fail("importance", "is not a known importance");
        None
    });
    let time = c
        .time("insight_time", p.insight_time.as_ref())
        .and_then(|t| c.not_future("insight_time", t, Utc::now()));
    Insight {
        source: p.source.clone(),
        external_id: p.external_id.clone(),
        kind,
        text: p.text.clone(),
        time,
        url: p.url.clone(),
        customer: p.customer.clone(),
        segment_id: p.segment_id.clone(),
        importance,
        item_keys: p.item_keys.clone(),
        hypothesis_ids: p.hypothesis_ids.clone(),
        outcome_ids: p.outcome_ids.clone(),
    }
}

pub fn insight_to_pb(i: &Insight) -> pb::Insight {
    pb::Insight {
        source: i.source.clone(),
        external_id: i.external_id.clone(),
        kind: kind_to_pb(i.kind) as i32,
        text: i.text.clone(),
        insight_time: i.time.as_ref().map(timestamp),
        url: i.url.clone(),
        customer: i.customer.clone(),
        segment_id: i.segment_id.clone(),
        importance: importance_to_pb(i.importance) as i32,
        item_keys: i.item_keys.clone(),
        hypothesis_ids: i.hypothesis_ids.clone(),
        outcome_ids: i.outcome_ids.clone(),
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[tonic::async_trait]
impl pb::insight_service_server::InsightService for InsightApi {
    async fn record_insights(
        &self,
        req: Request<pb::RecordInsightsRequest>,
    ) -> Reply<pb::RecordInsightsResponse> {
        let r = req.into_inner();
        if r.insights.len() > MAX_INSIGHTS_PER_CALL {
            return Err(Error::invalid(
                "insights",
                format!("at most {MAX_INSIGHTS_PER_CALL} per call; split the batch"),
            )
            .into());
        }
        let mut wire = Vec::with_capacity(r.insights.len());
        let insights: Vec<Insight> = r
            .insights
            .iter()
            .enumerate()
            .map(|(n, p)| {
                let mut c = Check::new(format!("insights[{n}]"));
                let i = insight_from_pb(p, &mut c);
                wire.push(c.violations);
                i
            })
            .collect();
        let counts = self.0.record_insights(insights, wire).await?;
        Ok(Response::new(pb::RecordInsightsResponse {
            created_count: count(counts.created),
            updated_count: count(counts.updated),
            unchanged_count: count(counts.unchanged),
        }))
    }

    async fn list_insights(
        &self,
        req: Request<pb::ListInsightsRequest>,
    ) -> Reply<pb::ListInsightsResponse> {
        let r = req.get_ref();
        let size = page::page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        // Debug quoting keeps one filter's text from reading as another's.
        let fingerprint = format!(
            "ListInsights|{:?}|{:?}|{:?}|{:?}",
            r.item_key, r.hypothesis_id, r.customer, r.segment_id
        );
        let token = PageToken::decode(&r.page_token, &fingerprint)?;
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let filter = InsightFilter {
            item_key: some(&r.item_key),
            hypothesis_id: some(&r.hypothesis_id),
            customer: some(&r.customer),
            segment_id: some(&r.segment_id),
        };
        let (keys, next) = page::paginate(
            |after, limit| self.0.insight_keys(&filter, after, limit),
            Clone::clone,
            token,
            &fingerprint,
            size,
        );
        let insights = self.0.get_insights(&keys).await?;
        Ok(Response::new(pb::ListInsightsResponse {
            insights: insights
                .iter()
                .filter(|i| filter.matches(i))
                .map(insight_to_pb)
                .collect(),
            next_page_token: next,
        }))
    }

    async fn forget_customer(
        &self,
        req: Request<pb::ForgetCustomerRequest>,
    ) -> Reply<pb::ForgetCustomerResponse> {
        let customer = &req.get_ref().customer;
        if customer.is_empty() {
            return Err(
                Error::invalid("customer", "is required: the customer's id as recorded").into(),
            );
        }
        let n = self.0.forget_customer(customer).await?;
        // The customer's id is personal data of a kind: the log says how
        // many were erased, not whose.
        tracing::info!(forgotten = n, "a customer's insights were erased");
        Ok(Response::new(pb::ForgetCustomerResponse {
            forgotten_count: i32::try_from(n).unwrap_or(i32::MAX),
        }))
    }
}
