//! The four gRPC services. Each handler validates, translates and delegates;
//! the rules live in the engine, the meaning in the score.

use std::sync::Arc;

use chrono::Utc;
use tonic::{Request, Response, Status};

use super::convert::{self, Check};
use super::page::{self, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageToken};
use super::to_status;
use crate::domain::{self, Item};
use crate::engine::{Engine, Error, Result};
use crate::index::{OrdF64, RankOrder, RankQuery};
use crate::proto as pb;
use crate::store::ItemFilter;

type Reply<T> = std::result::Result<Response<T>, Status>;

fn reply<T>(r: Result<T>) -> Reply<T> {
    r.map(Response::new).map_err(to_status)
}

fn required<'a, T>(field: &str, v: Option<&'a T>) -> Result<&'a T> {
    v.ok_or_else(|| Error::invalid(field, "is required"))
}

fn require_id(field: &str, id: &str) -> Result<()> {
    let mut c = Check::new("");
    c.id(field, id);
    c.finish(())
}

const MAX_BATCH: usize = 1000;
const MAX_OBSERVATIONS: usize = 10_000;

// ===== sources =====

/// `plumbline.v1.SourceService`.
#[derive(Clone)]
pub struct SourceApi(pub Arc<Engine>);

#[tonic::async_trait]
impl pb::source_service_server::SourceService for SourceApi {
    async fn create_source(
        &self,
        req: Request<pb::CreateSourceRequest>,
    ) -> Reply<pb::CreateSourceResponse> {
        reply(
            async {
                let s = convert::source_from_pb(
                    required("source", req.get_ref().source.as_ref())?,
                    "source",
                )?;
                let s = self.0.create_source(s).await?;
                Ok(pb::CreateSourceResponse {
                    source: Some(convert::source_to_pb(&s)),
                })
            }
            .await,
        )
    }

    async fn get_source(&self, req: Request<pb::GetSourceRequest>) -> Reply<pb::GetSourceResponse> {
        reply((|| {
            require_id("id", &req.get_ref().id)?;
            let s = self.0.get_source(&req.get_ref().id)?;
            Ok(pb::GetSourceResponse {
                source: Some(convert::source_to_pb(&s)),
            })
        })())
    }

    async fn list_sources(
        &self,
        req: Request<pb::ListSourcesRequest>,
    ) -> Reply<pb::ListSourcesResponse> {
        reply((|| {
            let r = req.get_ref();
            let size = page::page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
            let token = PageToken::decode(&r.page_token, "ListSources")?;
            let ix = self.0.read();
            let (page, next) =
                page::paginate(ix.sources(), |s| s.id.clone(), token, "ListSources", size);
            Ok(pb::ListSourcesResponse {
                sources: page.into_iter().map(convert::source_to_pb).collect(),
                next_page_token: next,
            })
        })())
    }

    async fn update_source(
        &self,
        req: Request<pb::UpdateSourceRequest>,
    ) -> Reply<pb::UpdateSourceResponse> {
        reply(
            async {
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
                Ok(pb::UpdateSourceResponse {
                    source: Some(convert::source_to_pb(&s)),
                })
            }
            .await,
        )
    }

    async fn delete_source(
        &self,
        req: Request<pb::DeleteSourceRequest>,
    ) -> Reply<pb::DeleteSourceResponse> {
        reply(
            async {
                let r = req.get_ref();
                require_id("id", &r.id)?;
                let n = self.0.delete_source(&r.id, r.force).await?;
                Ok(pb::DeleteSourceResponse {
                    deleted_item_count: n as i64,
                })
            }
            .await,
        )
    }
}

// ===== items and links =====

/// `plumbline.v1.BacklogService`.
#[derive(Clone)]
pub struct BacklogApi(pub Arc<Engine>);

#[tonic::async_trait]
impl pb::backlog_service_server::BacklogService for BacklogApi {
    async fn upsert_items(
        &self,
        req: Request<pb::UpsertItemsRequest>,
    ) -> Reply<pb::UpsertItemsResponse> {
        reply(
            async {
                let r = req.into_inner();
                if r.items.is_empty() {
                    return Err(Error::invalid("items", "at least one item is required"));
                }
                if r.items.len() > MAX_BATCH {
                    return Err(Error::invalid(
                        "items",
                        format!("at most {MAX_BATCH} items per call"),
                    ));
                }
                let mut items: Vec<Item> = Vec::with_capacity(r.items.len());
                let mut violations = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for (i, p) in r.items.iter().enumerate() {
                    let mut c = Check::new(format!("items[{i}]"));
                    if let Some(it) = convert::item_from_pb(p, &mut c) {
                        if seen.insert(it.key()) {
                            items.push(it);
                        } else {
                            c.fail(
                                "external_id",
                                format!("{} appears twice in this batch", it.key()),
                            );
                        }
                    }
                    violations.extend(c.violations);
                }
                if !violations.is_empty() {
                    return Err(Error::InvalidArgument(violations));
                }
                let (items, counts) = self.0.upsert_items(items).await?;
                Ok(pb::UpsertItemsResponse {
                    items: items.iter().map(convert::item_to_pb).collect(),
                    created_count: counts.created as i32,
                    updated_count: counts.updated as i32,
                    unchanged_count: counts.unchanged as i32,
                })
            }
            .await,
        )
    }

    async fn get_item(&self, req: Request<pb::GetItemRequest>) -> Reply<pb::GetItemResponse> {
        reply(
            async {
                let key = &req.get_ref().key;
                if key.is_empty() {
                    return Err(Error::invalid("key", "is required"));
                }
                let mut items = self.0.get_items(std::slice::from_ref(key)).await?;
                Ok(pb::GetItemResponse {
                    item: items.pop().as_ref().map(convert::item_to_pb),
                })
            }
            .await,
        )
    }

    async fn batch_get_items(
        &self,
        req: Request<pb::BatchGetItemsRequest>,
    ) -> Reply<pb::BatchGetItemsResponse> {
        reply(
            async {
                let keys = &req.get_ref().keys;
                if keys.len() > MAX_BATCH {
                    return Err(Error::invalid(
                        "keys",
                        format!("at most {MAX_BATCH} keys per call"),
                    ));
                }
                if let Some(i) = keys.iter().position(String::is_empty) {
                    return Err(Error::invalid(format!("keys[{i}]"), "must not be empty"));
                }
                let items = self.0.get_items(keys).await?;
                Ok(pb::BatchGetItemsResponse {
                    items: items.iter().map(convert::item_to_pb).collect(),
                })
            }
            .await,
        )
    }

    async fn list_items(&self, req: Request<pb::ListItemsRequest>) -> Reply<pb::ListItemsResponse> {
        reply(
            async {
                let r = req.get_ref();
                let size = page::page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
                let mut c = Check::new("");
                let state = convert::item_state_from_pb(r.state, &mut c, "state");
                c.finish(())?;
                let fingerprint = format!("ListItems|{}|{}|{}", r.source_id, r.state, r.label);
                let token = PageToken::decode(&r.page_token, &fingerprint)?;
                let filter = ItemFilter {
                    source_id: (!r.source_id.is_empty()).then(|| r.source_id.clone()),
                    state,
                    label: (!r.label.is_empty()).then(|| r.label.clone()),
                };
                let after = token.map(|t| t.k);
                let mut items = self
                    .0
                    .list_items(&filter, after.as_deref(), size + 1)
                    .await?;
                let next = if items.len() > size {
                    items.truncate(size);
                    items
                        .last()
                        .map(|l| {
                            PageToken {
                                q: fingerprint.clone(),
                                k: l.key(),
                                ..Default::default()
                            }
                            .encode()
                        })
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                Ok(pb::ListItemsResponse {
                    items: items.iter().map(convert::item_to_pb).collect(),
                    next_page_token: next,
                })
            }
            .await,
        )
    }

    async fn link_item(&self, req: Request<pb::LinkItemRequest>) -> Reply<pb::LinkItemResponse> {
        reply(
            async {
                let r = req.into_inner();
                let mut c = Check::new("");
                if r.item_key.is_empty() {
                    c.fail("item_key", "is required");
                }
                c.id("hypothesis_id", &r.hypothesis_id);
                let contribution = if r.contribution == 0.0 {
                    1.0
                } else {
                    r.contribution
                };
                c.unit_interval("contribution", contribution, false);
                c.text("rationale", &r.rationale, false, 1 << 16);
                c.finish(())?;
                let link = self
                    .0
                    .link_item(&r.item_key, &r.hypothesis_id, contribution, r.rationale)
                    .await?;
                Ok(pb::LinkItemResponse {
                    link: Some(convert::link_to_pb(&link)),
                })
            }
            .await,
        )
    }

    async fn unlink_item(
        &self,
        req: Request<pb::UnlinkItemRequest>,
    ) -> Reply<pb::UnlinkItemResponse> {
        reply(
            async {
                let r = req.get_ref();
                let mut c = Check::new("");
                if r.item_key.is_empty() {
                    c.fail("item_key", "is required");
                }
                c.id("hypothesis_id", &r.hypothesis_id);
                c.finish(())?;
                self.0.unlink_item(&r.item_key, &r.hypothesis_id).await?;
                Ok(pb::UnlinkItemResponse {})
            }
            .await,
        )
    }

    async fn list_links(&self, req: Request<pb::ListLinksRequest>) -> Reply<pb::ListLinksResponse> {
        reply((|| {
            let r = req.get_ref();
            let size = page::page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
            let fingerprint = format!("ListLinks|{}|{}", r.item_key, r.hypothesis_id);
            let token = PageToken::decode(&r.page_token, &fingerprint)?;
            let ix = self.0.read();
            let links: Vec<crate::index::LinkRef<'_>> =
                match (r.item_key.is_empty(), r.hypothesis_id.is_empty()) {
                    (false, false) => ix.link(&r.item_key, &r.hypothesis_id).into_iter().collect(),
                    (false, true) => ix.links_of_item(&r.item_key).collect(),
                    (true, false) => ix.links_of_hypothesis(&r.hypothesis_id),
                    (true, true) => ix.all_links(),
                };
            let key =
                |l: &crate::index::LinkRef<'_>| format!("{}\u{0}{}", l.item_key, l.hypothesis_id);
            let mut links = links;
            links.sort_by_key(|l| key(l));
            let (page, next) = page::paginate(links.into_iter(), key, token, &fingerprint, size);
            Ok(pb::ListLinksResponse {
                links: page
                    .iter()
                    .map(|l| convert::link_to_pb(&l.to_link()))
                    .collect(),
                next_page_token: next,
            })
        })())
    }
}

// ===== goals, metrics, hypotheses =====

/// `plumbline.v1.ValueModelService`.
#[derive(Clone)]
pub struct ValueModelApi(pub Arc<Engine>);

impl ValueModelApi {
    fn goal_pb(&self, g: &domain::Goal) -> pb::Goal {
        convert::goal_to_pb(g, self.0.read().goal_weight(&g.id))
    }

    fn hypothesis_pb(&self, h: &domain::Hypothesis) -> pb::Hypothesis {
        convert::hypothesis_to_pb(h, self.0.read().hypothesis_value(h))
    }
}

#[tonic::async_trait]
impl pb::value_model_service_server::ValueModelService for ValueModelApi {
    async fn create_goal(
        &self,
        req: Request<pb::CreateGoalRequest>,
    ) -> Reply<pb::CreateGoalResponse> {
        reply(
            async {
                let g =
                    convert::goal_from_pb(required("goal", req.get_ref().goal.as_ref())?, "goal")?;
                let g = self.0.create_goal(g).await?;
                Ok(pb::CreateGoalResponse {
                    goal: Some(self.goal_pb(&g)),
                })
            }
            .await,
        )
    }

    async fn get_goal(&self, req: Request<pb::GetGoalRequest>) -> Reply<pb::GetGoalResponse> {
        reply((|| {
            require_id("id", &req.get_ref().id)?;
            let g = self.0.get_goal(&req.get_ref().id)?;
            Ok(pb::GetGoalResponse {
                goal: Some(self.goal_pb(&g)),
            })
        })())
    }

    async fn list_goals(&self, req: Request<pb::ListGoalsRequest>) -> Reply<pb::ListGoalsResponse> {
        reply((|| {
            let r = req.get_ref();
            let size = page::page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
            let fingerprint = format!("ListGoals|{}", r.parent_id);
            let token = PageToken::decode(&r.page_token, &fingerprint)?;
            let ix = self.0.read();
            let goals = ix
                .goals()
                .filter(|g| r.parent_id.is_empty() || g.parent_id == r.parent_id);
            let (page, next) = page::paginate(goals, |g| g.id.clone(), token, &fingerprint, size);
            Ok(pb::ListGoalsResponse {
                goals: page
                    .into_iter()
                    .map(|g| convert::goal_to_pb(g, ix.goal_weight(&g.id)))
                    .collect(),
                next_page_token: next,
            })
        })())
    }

    async fn update_goal(
        &self,
        req: Request<pb::UpdateGoalRequest>,
    ) -> Reply<pb::UpdateGoalResponse> {
        reply(
            async {
                let r = req.get_ref();
                let incoming = required("goal", r.goal.as_ref())?;
                require_id("goal.id", &incoming.id)?;
                let g = self
                    .0
                    .update_goal(&incoming.id, |g| {
                        let mut p = convert::goal_to_pb(g, 0.0);
                        convert::apply_mask(
                            &mut p,
                            incoming,
                            r.update_mask.as_ref(),
                            &[
                                "title",
                                "description",
                                "level",
                                "parent_id",
                                "key_value_area",
                                "weight",
                            ],
                            |p, i, f| match f {
                                "title" => p.title = i.title.clone(),
                                "description" => p.description = i.description.clone(),
                                "level" => p.level = i.level,
                                "parent_id" => p.parent_id = i.parent_id.clone(),
                                "key_value_area" => p.key_value_area = i.key_value_area,
                                _ => p.weight = i.weight,
                            },
                        )?;
                        let updated = convert::goal_from_pb(&p, "goal")?;
                        *g = domain::Goal {
                            create_time: g.create_time,
                            ..updated
                        };
                        Ok(())
                    })
                    .await?;
                Ok(pb::UpdateGoalResponse {
                    goal: Some(self.goal_pb(&g)),
                })
            }
            .await,
        )
    }

    async fn delete_goal(
        &self,
        req: Request<pb::DeleteGoalRequest>,
    ) -> Reply<pb::DeleteGoalResponse> {
        reply(
            async {
                require_id("id", &req.get_ref().id)?;
                self.0.delete_goal(&req.get_ref().id).await?;
                Ok(pb::DeleteGoalResponse {})
            }
            .await,
        )
    }

    async fn create_metric(
        &self,
        req: Request<pb::CreateMetricRequest>,
    ) -> Reply<pb::CreateMetricResponse> {
        reply(
            async {
                let m = convert::metric_from_pb(
                    required("metric", req.get_ref().metric.as_ref())?,
                    "metric",
                )?;
                let m = self.0.create_metric(m).await?;
                Ok(pb::CreateMetricResponse {
                    metric: Some(convert::metric_to_pb(&m, Utc::now())),
                })
            }
            .await,
        )
    }

    async fn get_metric(&self, req: Request<pb::GetMetricRequest>) -> Reply<pb::GetMetricResponse> {
        reply((|| {
            require_id("id", &req.get_ref().id)?;
            let m = self.0.get_metric(&req.get_ref().id)?;
            Ok(pb::GetMetricResponse {
                metric: Some(convert::metric_to_pb(&m, Utc::now())),
            })
        })())
    }

    async fn list_metrics(
        &self,
        req: Request<pb::ListMetricsRequest>,
    ) -> Reply<pb::ListMetricsResponse> {
        reply((|| {
            let r = req.get_ref();
            let size = page::page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
            let token = PageToken::decode(&r.page_token, "ListMetrics")?;
            let ix = self.0.read();
            let now = Utc::now();
            let (page, next) = page::paginate(
                ix.metrics(),
                |m| m.metric.id.clone(),
                token,
                "ListMetrics",
                size,
            );
            Ok(pb::ListMetricsResponse {
                metrics: page
                    .into_iter()
                    .map(|m| convert::metric_to_pb(m, now))
                    .collect(),
                next_page_token: next,
            })
        })())
    }

    async fn update_metric(
        &self,
        req: Request<pb::UpdateMetricRequest>,
    ) -> Reply<pb::UpdateMetricResponse> {
        reply(
            async {
                let r = req.get_ref();
                let incoming = required("metric", r.metric.as_ref())?;
                require_id("metric.id", &incoming.id)?;
                let m = self
                    .0
                    .update_metric(&incoming.id, |m| {
                        let entry = crate::index::MetricEntry {
                            metric: m.clone(),
                            observations: Default::default(),
                            gap: 0.0,
                        };
                        let mut p = convert::metric_to_pb(&entry, Utc::now());
                        // Only the mask decides whether the caller sets the direction;
                        // otherwise it is re-derived from baseline and target.
                        let direction_given = match r.update_mask.as_ref() {
                            Some(k) if !k.paths.is_empty() => {
                                k.paths.iter().any(|x| x == "direction")
                            }
                            _ => incoming.direction != 0,
                        };
                        convert::apply_mask(
                            &mut p,
                            incoming,
                            r.update_mask.as_ref(),
                            &["name", "unit", "direction", "baseline", "target", "cadence"],
                            |p, i, f| match f {
                                "name" => p.name = i.name.clone(),
                                "unit" => p.unit = i.unit.clone(),
                                "direction" => p.direction = i.direction,
                                "baseline" => p.baseline = i.baseline,
                                "target" => p.target = i.target,
                                _ => p.cadence = i.cadence,
                            },
                        )?;
                        if !direction_given {
                            p.direction = 0;
                        }
                        let updated = convert::metric_from_pb(&p, "metric")?;
                        *m = domain::Metric {
                            create_time: m.create_time,
                            ..updated
                        };
                        Ok(())
                    })
                    .await?;
                Ok(pb::UpdateMetricResponse {
                    metric: Some(convert::metric_to_pb(&m, Utc::now())),
                })
            }
            .await,
        )
    }

    async fn delete_metric(
        &self,
        req: Request<pb::DeleteMetricRequest>,
    ) -> Reply<pb::DeleteMetricResponse> {
        reply(
            async {
                require_id("id", &req.get_ref().id)?;
                self.0.delete_metric(&req.get_ref().id).await?;
                Ok(pb::DeleteMetricResponse {})
            }
            .await,
        )
    }

    async fn record_observations(
        &self,
        req: Request<pb::RecordObservationsRequest>,
    ) -> Reply<pb::RecordObservationsResponse> {
        reply(
            async {
                let r = req.into_inner();
                if r.observations.is_empty() {
                    return Err(Error::invalid(
                        "observations",
                        "at least one observation is required",
                    ));
                }
                if r.observations.len() > MAX_OBSERVATIONS {
                    return Err(Error::invalid(
                        "observations",
                        format!("at most {MAX_OBSERVATIONS} per call"),
                    ));
                }
                let now = Utc::now();
                let mut obs = Vec::with_capacity(r.observations.len());
                let mut violations = Vec::new();
                for (i, p) in r.observations.iter().enumerate() {
                    let mut c = Check::new(format!("observations[{i}]"));
                    if let Some(o) = convert::observation_from_pb(p, &mut c, now) {
                        obs.push(o);
                    }
                    violations.extend(c.violations);
                }
                if !violations.is_empty() {
                    return Err(Error::InvalidArgument(violations));
                }
                let n = obs.len();
                let metrics = self.0.record_observations(obs).await?;
                Ok(pb::RecordObservationsResponse {
                    recorded_count: n as i32,
                    metrics: metrics
                        .iter()
                        .map(|m| convert::metric_to_pb(m, now))
                        .collect(),
                })
            }
            .await,
        )
    }

    async fn create_hypothesis(
        &self,
        req: Request<pb::CreateHypothesisRequest>,
    ) -> Reply<pb::CreateHypothesisResponse> {
        reply(
            async {
                let h = convert::hypothesis_from_pb(
                    required("hypothesis", req.get_ref().hypothesis.as_ref())?,
                    "hypothesis",
                )?;
                let h = self.0.create_hypothesis(h).await?;
                Ok(pb::CreateHypothesisResponse {
                    hypothesis: Some(self.hypothesis_pb(&h)),
                })
            }
            .await,
        )
    }

    async fn get_hypothesis(
        &self,
        req: Request<pb::GetHypothesisRequest>,
    ) -> Reply<pb::GetHypothesisResponse> {
        reply((|| {
            require_id("id", &req.get_ref().id)?;
            let h = self.0.get_hypothesis(&req.get_ref().id)?;
            Ok(pb::GetHypothesisResponse {
                hypothesis: Some(self.hypothesis_pb(&h)),
            })
        })())
    }

    async fn list_hypotheses(
        &self,
        req: Request<pb::ListHypothesesRequest>,
    ) -> Reply<pb::ListHypothesesResponse> {
        reply((|| {
            let r = req.get_ref();
            let size = page::page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
            let fingerprint = format!("ListHypotheses|{}|{}", r.goal_id, r.metric_id);
            let token = PageToken::decode(&r.page_token, &fingerprint)?;
            let ix = self.0.read();
            let hyps = ix.hypotheses().filter(|h| {
                (r.goal_id.is_empty() || h.goal_id == r.goal_id)
                    && (r.metric_id.is_empty() || h.metric_id == r.metric_id)
            });
            let (page, next) = page::paginate(hyps, |h| h.id.clone(), token, &fingerprint, size);
            Ok(pb::ListHypothesesResponse {
                hypotheses: page
                    .into_iter()
                    .map(|h| convert::hypothesis_to_pb(h, ix.hypothesis_value(h)))
                    .collect(),
                next_page_token: next,
            })
        })())
    }

    async fn update_hypothesis(
        &self,
        req: Request<pb::UpdateHypothesisRequest>,
    ) -> Reply<pb::UpdateHypothesisResponse> {
        reply(
            async {
                let r = req.get_ref();
                let incoming = required("hypothesis", r.hypothesis.as_ref())?;
                require_id("hypothesis.id", &incoming.id)?;
                let h = self
                    .0
                    .update_hypothesis(&incoming.id, |h| {
                        let mut p = convert::hypothesis_to_pb(h, 0.0);
                        convert::apply_mask(
                            &mut p,
                            incoming,
                            r.update_mask.as_ref(),
                            &[
                                "statement",
                                "goal_id",
                                "metric_id",
                                "expected_effect",
                                "confidence",
                                "status",
                                "check_time",
                            ],
                            |p, i, f| match f {
                                "statement" => p.statement = i.statement.clone(),
                                "goal_id" => p.goal_id = i.goal_id.clone(),
                                "metric_id" => p.metric_id = i.metric_id.clone(),
                                "expected_effect" => p.expected_effect = i.expected_effect,
                                "confidence" => p.confidence = i.confidence,
                                "status" => p.status = i.status,
                                _ => p.check_time = i.check_time,
                            },
                        )?;
                        let updated = convert::hypothesis_from_pb(&p, "hypothesis")?;
                        *h = domain::Hypothesis {
                            create_time: h.create_time,
                            ..updated
                        };
                        Ok(())
                    })
                    .await?;
                Ok(pb::UpdateHypothesisResponse {
                    hypothesis: Some(self.hypothesis_pb(&h)),
                })
            }
            .await,
        )
    }

    async fn delete_hypothesis(
        &self,
        req: Request<pb::DeleteHypothesisRequest>,
    ) -> Reply<pb::DeleteHypothesisResponse> {
        reply(
            async {
                let r = req.get_ref();
                require_id("id", &r.id)?;
                self.0.delete_hypothesis(&r.id, r.force).await?;
                Ok(pb::DeleteHypothesisResponse {})
            }
            .await,
        )
    }
}

// ===== scoring =====

/// The ranking order a request names.
pub(super) fn rank_order(order: i32) -> Result<RankOrder> {
    match pb::RankOrder::try_from(order) {
        Ok(pb::RankOrder::Unspecified | pb::RankOrder::ValueDensity) => Ok(RankOrder::ValueDensity),
        Ok(pb::RankOrder::Value) => Ok(RankOrder::Value),
        Err(_) => Err(Error::invalid("order", "is not a known order")),
    }
}

/// Each ranked entry's rank (numbered from `rank_before + 1`), key, title
/// and score: what both views of a page are made of.
fn page_entries<'a>(
    ix: &'a crate::index::ScoreIndex,
    ranked: &'a [(crate::index::RankKey, &'a crate::score::Score)],
    rank_before: usize,
) -> impl Iterator<Item = (i32, &'a str, &'a str, &'a crate::score::Score)> {
    ranked
        .iter()
        .enumerate()
        .map(move |(i, ((_, key), score))| {
            let title = ix.item(key).map(|f| f.title.as_str()).unwrap_or_default();
            ((rank_before + i + 1) as i32, key.as_str(), title, *score)
        })
}

/// Ranked entries as served, numbered from `rank_before + 1`.
pub(super) fn ranked_items(
    ix: &crate::index::ScoreIndex,
    ranked: &[(crate::index::RankKey, &crate::score::Score)],
    rank_before: usize,
    full: bool,
    now: crate::domain::Time,
) -> Vec<pb::RankedItem> {
    let stale = convert::StaleMetrics::new(ix, now);
    page_entries(ix, ranked, rank_before)
        .map(|(rank, key, title, score)| pb::RankedItem {
            rank,
            score: Some(convert::score_to_pb(key, title, score, &stale, full)),
        })
        .collect()
}

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
        reply((|| {
            let key = &req.get_ref().item_key;
            if key.is_empty() {
                return Err(Error::invalid("item_key", "is required"));
            }
            let ix = self.0.read();
            let (Some(facts), Some(score)) = (ix.item(key), ix.score(key)) else {
                return Err(Error::NotFound(format!("item {key:?} not found")));
            };
            Ok(pb::GetItemScoreResponse {
                score: Some(convert::score_to_pb(
                    key,
                    &facts.title,
                    score,
                    &convert::StaleMetrics::new(&ix, Utc::now()),
                    true,
                )),
            })
        })())
    }

    type WatchRankingStream = super::watch::RankingStream;

    async fn watch_ranking(
        &self,
        req: Request<pb::WatchRankingRequest>,
    ) -> std::result::Result<Response<Self::WatchRankingStream>, Status> {
        super::watch::watch_ranking(self.0.clone(), req.into_inner())
            .map(Response::new)
            .map_err(to_status)
    }

    async fn rank_items(&self, req: Request<pb::RankItemsRequest>) -> Reply<pb::RankItemsResponse> {
        reply((|| {
            let r = req.get_ref();
            let size = page::page_size(r.page_size, DEFAULT_RANK_SIZE, MAX_PAGE_SIZE)?;
            let order = rank_order(r.order)?;
            let full = match pb::ScoreView::try_from(r.view) {
                Ok(pb::ScoreView::Unspecified | pb::ScoreView::Basic) => false,
                Ok(pb::ScoreView::Full) => true,
                Err(_) => return Err(Error::invalid("view", "is not a known view")),
            };
            let fingerprint = format!(
                "RankItems|{:?}|{}|{}|{}",
                order, r.source_id, r.label, r.include_closed
            );
            let token = PageToken::decode(&r.page_token, &fingerprint)?;
            let (after, rank_before) = match token {
                Some(t) => {
                    let bits = t
                        .v
                        .ok_or_else(|| Error::invalid("page_token", "not a ranking page token"))?;
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
            Ok(pb::RankItemsResponse {
                items: ranked_items(&ix, &ranked, rank_before as usize, full, now),
                next_page_token: next,
            })
        })())
    }
}
