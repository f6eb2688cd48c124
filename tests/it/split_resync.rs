//! A split item stays split when its tracker hands it back. Redmine bumps a
//! parent's `updated_on` for every child created, so the sync after
//! `ApplySplit` with write-back reads the split item again; its description
//! still names the hypotheses its slices now carry, and the source's link
//! rules must not link it to them again (the item and its slices would count
//! the same value twice). The mock is a small Redmine over one list of
//! issues: the list filtered by `updated_on>=` as Redmine filters it, and
//! creates that add the child and bump the parent, as Redmine does.

use std::sync::{Arc, Mutex};

use crate::common::*;
use plumbline::proto as pb;
use plumbline::proto::split_service_client::SplitServiceClient;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN_VAR: &str = "PLB_TEST_REDMINE_TOKEN";
const TOKEN: &str = "3f9c2b7a1e8d4c6b5a0f9e8d7c6b5a4f3e2d1c0b";
const ISSUES: &str = "/redmine/issues.json";
/// The split item's description: its hypotheses, by the default link rule.
const BODY: &str =
    "Let shoppers pay in one step.\r\n\r\nHypothesis: H-1 (0.5)\r\nHypothesis: H-2 (0.25)\r\n";

/// Redmine's times: whole seconds, from 2026-11-20T10:00:00Z.
fn time(second: i64) -> String {
    (chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z").unwrap()
        + chrono::Duration::seconds(second))
    .to_utc()
    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An issue as Redmine 5 sends it in lists and in the answer to a create.
fn issue(id: u64, subject: &str, description: &str, parent: Option<u64>, updated: &str) -> Value {
    let mut v = json!({
        "id": id,
        "project": {"id": 1, "name": "Shop"},
        "tracker": {"id": 2, "name": "Feature"},
        "status": {"id": 1, "name": "New", "is_closed": false},
        "priority": {"id": 2, "name": "Normal"},
        "author": {"id": 5, "name": "Dana Reyes"},
        "subject": subject,
        "description": description,
        "start_date": "2026-11-20", "due_date": null, "done_ratio": 0,
        "is_private": false,
        "estimated_hours": if parent.is_some() { 6.0 } else { 12.0 },
        "custom_fields": [],
        "created_on": time(0), "updated_on": updated, "closed_on": null,
    });
    if let Some(p) = parent {
        v["parent"] = json!({"id": p});
    }
    v
}

/// The tracker's issues, shared by its list and create endpoints.
#[derive(Clone)]
struct Redmine {
    issues: Arc<Mutex<Vec<Value>>>,
    /// The tracker's clock, in seconds after [`time`]`(0)`.
    clock: Arc<Mutex<i64>>,
}

impl Redmine {
    fn tick(&self) -> String {
        let mut c = self.clock.lock().unwrap();
        *c += 1;
        time(*c)
    }

    /// Edits issue `id` as a person would: its update time moves on.
    fn edit(&self, id: u64, change: impl FnOnce(&mut Value)) {
        let now = self.tick();
        let mut all = self.issues.lock().unwrap();
        let it = all.iter_mut().find(|i| i["id"] == id).unwrap();
        change(it);
        it["updated_on"] = now.into();
    }
}

/// `GET /issues.json?updated_on=>=T&sort=updated_on&offset=..`: one page.
struct List(Redmine);

impl Respond for List {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let since = req
            .url
            .query_pairs()
            .find(|(k, _)| k == "updated_on")
            .map(|(_, v)| v.trim_start_matches(">=").to_string());
        let mut issues: Vec<Value> = self
            .0
            .issues
            .lock()
            .unwrap()
            .iter()
            .filter(|i| {
                since
                    .as_deref()
                    .is_none_or(|s| i["updated_on"].as_str().unwrap() >= s)
            })
            .cloned()
            .collect();
        issues.sort_by_key(|i| {
            (
                i["updated_on"].as_str().unwrap().to_string(),
                i["id"].as_u64(),
            )
        });
        let total = issues.len();
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/json; charset=utf-8")
            .set_body_json(
                json!({"issues": issues, "total_count": total, "offset": 0, "limit": 100}),
            )
    }
}

/// `POST /issues.json`: creates the child and, as Redmine does when a child
/// is added, moves the parent's `updated_on` on.
struct Create(Redmine, Mutex<u64>);

impl Respond for Create {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        let sent = &sent["issue"];
        let id = {
            let mut n = self.1.lock().unwrap();
            *n += 1;
            *n
        };
        let parent = sent["parent_issue_id"].as_u64().unwrap();
        let now = self.0.tick();
        let child = issue(
            id,
            sent["subject"].as_str().unwrap(),
            &sent["description"].as_str().unwrap().replace('\n', "\r\n"),
            Some(parent),
            &now,
        );
        {
            let mut all = self.0.issues.lock().unwrap();
            all.push(child.clone());
            let p = all.iter_mut().find(|i| i["id"] == parent).unwrap();
            p["updated_on"] = now.into();
        }
        ResponseTemplate::new(201)
            .insert_header("content-type", "application/json; charset=utf-8")
            .set_body_json(json!({"issue": child}))
    }
}

async fn start() -> (MockServer, Redmine, TestServer) {
    set_test_token(TOKEN_VAR, TOKEN);
    let mock = MockServer::start().await;
    let tracker = Redmine {
        issues: Arc::new(Mutex::new(vec![
            issue(7, "One-step checkout", BODY, None, &time(0)),
            issue(8, "Dark mode", "Hypothesis: H-2 (0.1)", None, &time(0)),
        ])),
        clock: Arc::new(Mutex::new(0)),
    };
    Mock::given(method("GET"))
        .and(path(ISSUES))
        .respond_with(List(tracker.clone()))
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path(ISSUES))
        .respond_with(Create(tracker.clone(), Mutex::new(500)))
        .mount(&mock)
        .await;
    // Who the key is: plumbline asks before a sync (Redmine answers a
    // rejected key as anonymous on the lists).
    Mock::given(method("GET"))
        .and(path("/redmine/users/current.json"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/json; charset=utf-8")
                .set_body_string(fixture("redmine/users-current.json")),
        )
        .mount(&mock)
        .await;
    let s = TestServer::start().await;
    value_model_for_rules(&s).await;
    create_source(
        &s,
        pb::Source {
            id: "rm".into(),
            kind: pb::TrackerKind::Redmine as i32,
            base_url: format!("{}/redmine", mock.uri()),
            project_key: "shop".into(),
            token_env: TOKEN_VAR.into(),
            ..Default::default()
        },
    )
    .await;
    (mock, tracker, s)
}

/// (hypothesis, contribution, origin) of an item's links.
async fn links_of(s: &TestServer, key: &str) -> Vec<(String, f64, i32)> {
    s.backlog()
        .list_links(pb::ListLinksRequest {
            item_key: key.into(),
            ..Default::default()
        })
        .await
        .expect("ListLinks")
        .into_inner()
        .links
        .into_iter()
        .map(|l| (l.hypothesis_id, l.contribution, l.origin))
        .collect()
}

const RULE: i32 = pb::LinkOrigin::Rule as i32;
const API: i32 = pb::LinkOrigin::Api as i32;

/// The split item has no link and no value; its slices rank above it with
/// the hypotheses' links, each once.
async fn assert_split_holds(s: &TestServer) {
    assert_eq!(links_of(s, "rm/7").await, [], "no rule link came back");
    let score = item_score(s, "rm/7").await;
    assert!(score.terms.is_empty(), "{:?}", score.terms);
    assert_eq!(score.value, 0.0);
    assert_eq!(links_of(s, "rm/501").await, [("H-1".into(), 0.5, API)]);
    assert_eq!(links_of(s, "rm/502").await, [("H-2".into(), 0.25, API)]);
    let ranking = keys(&full_ranking(s, false).await);
    let at = |k: &str| ranking.iter().position(|r| r == k).unwrap();
    assert!(
        at("rm/501") < at("rm/7") && at("rm/502") < at("rm/7"),
        "{ranking:?}"
    );
    // An item the split did not touch keeps its rule link.
    assert_eq!(links_of(s, "rm/8").await, [("H-2".into(), 0.1, RULE)]);
}

#[tokio::test]
async fn a_redmine_parent_bumped_by_its_new_children_stays_split_across_syncs_and_restarts() {
    let (_mock, tracker, s) = start().await;
    run_sync(&s, "rm", false).await.done();
    assert_eq!(
        links_of(&s, "rm/7").await,
        [("H-1".into(), 0.5, RULE), ("H-2".into(), 0.25, RULE)],
        "linked by its description"
    );

    let applied = SplitServiceClient::new(s.channel.clone())
        .apply_split(pb::ApplySplitRequest {
            item_key: "rm/7".into(),
            plan_kind: pb::SplitPlanKind::ByHypothesis as i32,
            write_back: true,
        })
        .await
        .expect("ApplySplit")
        .into_inner();
    assert_eq!(applied.created_count, 2);
    assert_eq!(links_of(&s, "rm/7").await, []);

    // Redmine moved rm/7's updated_on twice: the sync reads it again, with
    // its description unchanged, and its two children.
    let run = run_sync(&s, "rm", false).await;
    assert_eq!(run.done().upserted_count, 1, "rm/7, bumped");
    assert_split_holds(&s).await;

    // A restart, an edit of the description (still naming both) and a full
    // sync change nothing of that.
    let s = s.restart().await;
    assert_split_holds(&s).await;
    tracker.edit(7, |i| {
        i["description"] = format!("{BODY}Customers asked again.").into();
    });
    run_sync(&s, "rm", false).await.done();
    assert_split_holds(&s).await;
    run_sync(&s, "rm", true).await.done();
    assert_split_holds(&s).await;

    // A hypothesis named later, which no slice carries, is linked as usual.
    create_hypothesis(&s, hypothesis("H-3", "G", "conversion", 0.1, 0.5)).await;
    tracker.edit(7, |i| {
        i["description"] = format!("{BODY}Hypothesis: H-3 (0.5)").into();
    });
    run_sync(&s, "rm", false).await.done();
    assert_eq!(links_of(&s, "rm/7").await, [("H-3".into(), 0.5, RULE)]);

    // A person may still link the split item by hand (an API link).
    link(&s, "rm/7", "H-1", 0.2).await;
    assert_eq!(
        links_of(&s, "rm/7").await,
        [("H-1".into(), 0.2, API), ("H-3".into(), 0.5, RULE)]
    );
    s.stop().await;
}

/// The same holds for a split by task made in plumbline only, for rule
/// links by label, and for items pushed with `UpsertItems` (a plugin that
/// mirrors a tracker): the split item written again with its labels naming
/// the hypotheses gets no rule link back, after a restart too.
#[tokio::test]
async fn a_split_by_task_keeps_label_rules_off_when_the_item_is_pushed_again() {
    let s = TestServer::start().await;
    value_model_for_rules(&s).await;
    create_source(&s, github_source("web")).await;
    let body = "- [ ] Design the form\n- [ ] Build the API\n";
    let pushed = |title: &str| pb::Item {
        body: body.into(),
        ..labelled(
            estimated(item("web", "412", title), 8.0),
            &["hypothesis:H-1", "hypothesis:H-2"],
        )
    };
    upsert(&s, vec![pushed("Checkout")]).await;
    assert_eq!(
        links_of(&s, "web/412").await,
        [("H-1".into(), 1.0, RULE), ("H-2".into(), 1.0, RULE)]
    );
    SplitServiceClient::new(s.channel.clone())
        .apply_split(pb::ApplySplitRequest {
            item_key: "web/412".into(),
            plan_kind: pb::SplitPlanKind::ByTask as i32,
            write_back: false,
        })
        .await
        .expect("ApplySplit");
    let slice_links = vec![("H-1".into(), 0.5, API), ("H-2".into(), 0.5, API)];
    assert_eq!(links_of(&s, "web/412-s1").await, slice_links);

    let r = upsert(&s, vec![pushed("Checkout, renamed")]).await;
    assert_eq!(r.updated_count, 1);
    assert_eq!(links_of(&s, "web/412").await, []);
    let s = s.restart().await;
    upsert(&s, vec![pushed("Checkout, renamed again")]).await;
    assert_eq!(links_of(&s, "web/412").await, []);
    assert_eq!(item_score(&s, "web/412").await.value, 0.0);
    assert_eq!(links_of(&s, "web/412-s2").await, slice_links);
    s.stop().await;
}
