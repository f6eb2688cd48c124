//! Goals: create, read, update, delete, and effective weights down the tree.

use crate::common::*;
use plumbline::proto as pb;
use tonic::Code;

fn goal_weights(goals: &[pb::Goal]) -> Vec<(String, f64)> {
    goals
        .iter()
        .map(|g| (g.id.clone(), g.effective_weight))
        .collect()
}

async fn list_goals(s: &TestServer, parent: &str, page_size: i32) -> Vec<pb::Goal> {
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..50 {
        let page = s
            .model()
            .list_goals(pb::ListGoalsRequest {
                parent_id: parent.into(),
                page_size,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if page_size > 0 {
            assert!(page.goals.len() <= page_size as usize);
        }
        out.extend(page.goals);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
    panic!("pagination does not end");
}

#[tokio::test]
async fn goals_crud_and_effective_weights() {
    use pb::GoalLevel::{Intermediate, Strategic, Tactical};
    let s = TestServer::start().await;
    let a = create_goal(&s, goal("S-a", Strategic, "", Some(3.0))).await;
    assert_eq!(a.effective_weight, 1.0, "the only strategic goal");
    assert_eq!(a.weight, Some(3.0));
    assert_eq!(a.level, Strategic as i32);
    assert_eq!(a.key_value_area, pb::KeyValueArea::UnrealizedValue as i32);
    create_goal(&s, goal("S-b", Strategic, "", Some(1.0))).await;
    let get = |id: &'static str| {
        let mut c = s.model();
        async move {
            c.get_goal(pb::GetGoalRequest { id: id.into() })
                .await
                .map(|r| r.into_inner().goal.unwrap())
        }
    };
    assert_eq!(get("S-a").await.unwrap().effective_weight, 0.75);
    assert_eq!(get("S-b").await.unwrap().effective_weight, 0.25);

    // Unset weight means 1; children split their parent's weight.
    let ia = create_goal(&s, goal("I-a", Intermediate, "S-a", None)).await;
    assert_eq!(ia.weight, Some(1.0));
    assert_eq!(ia.effective_weight, 0.75);
    create_goal(&s, goal("I-b", Intermediate, "S-a", Some(3.0))).await;
    let t = create_goal(&s, goal("T-a", Tactical, "I-b", None)).await;
    assert_eq!(t.effective_weight, 0.5625);

    let all = list_goals(&s, "", 1).await;
    assert_eq!(
        goal_weights(&all),
        [
            ("I-a".to_string(), 0.1875),
            ("I-b".to_string(), 0.5625),
            ("S-a".to_string(), 0.75),
            ("S-b".to_string(), 0.25),
            ("T-a".to_string(), 0.5625),
        ]
    );
    let children: Vec<String> = list_goals(&s, "S-a", 0)
        .await
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(children, ["I-a", "I-b"]);
    let first = s
        .model()
        .list_goals(pb::ListGoalsRequest {
            parent_id: "S-a".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.goals.len(), 1);
    assert_invalid(
        s.model()
            .list_goals(pb::ListGoalsRequest {
                parent_id: "S-b".into(),
                page_size: 1,
                page_token: first.next_page_token,
            })
            .await,
        &["page_token"],
    );

    // Level rules.
    assert_invalid(
        s.model()
            .create_goal(pb::CreateGoalRequest {
                goal: Some(goal("I-x", Intermediate, "", None)),
            })
            .await,
        &["goal.parent_id"],
    );
    assert_invalid(
        s.model()
            .create_goal(pb::CreateGoalRequest {
                goal: Some(goal("T-x", Tactical, "S-a", None)),
            })
            .await,
        &["goal.parent_id"],
    );
    assert_invalid(
        s.model()
            .create_goal(pb::CreateGoalRequest {
                goal: Some(goal("S-x", Strategic, "S-a", None)),
            })
            .await,
        &["goal.parent_id"],
    );
    assert_invalid(
        s.model()
            .create_goal(pb::CreateGoalRequest {
                goal: Some(goal("I-x", Intermediate, "missing", None)),
            })
            .await,
        &["goal.parent_id"],
    );
    assert_invalid(
        s.model()
            .create_goal(pb::CreateGoalRequest {
                goal: Some(pb::Goal {
                    title: String::new(),
                    ..goal("S-x", pb::GoalLevel::Unspecified, "", Some(-1.0))
                }),
            })
            .await,
        &["goal.title", "goal.level", "goal.weight"],
    );
    assert_code(get("I-x").await, Code::NotFound);
    assert_code(
        s.model()
            .create_goal(pb::CreateGoalRequest {
                goal: Some(goal("S-a", Strategic, "", None)),
            })
            .await,
        Code::AlreadyExists,
    );

    // Update: only the masked field changes, weights follow.
    let updated = s
        .model()
        .update_goal(pb::UpdateGoalRequest {
            goal: Some(pb::Goal {
                title: "ignored".into(),
                ..goal("S-b", Strategic, "", Some(3.0))
            }),
            update_mask: mask(&["weight"]),
        })
        .await
        .unwrap()
        .into_inner()
        .goal
        .unwrap();
    assert_eq!(updated.weight, Some(3.0));
    assert_eq!(updated.title, "Goal S-b");
    assert_eq!(updated.effective_weight, 0.5);
    assert_eq!(get("S-a").await.unwrap().effective_weight, 0.5);
    assert_eq!(get("T-a").await.unwrap().effective_weight, 0.375);
    assert_invalid(
        s.model()
            .update_goal(pb::UpdateGoalRequest {
                goal: Some(goal("S-b", Strategic, "", None)),
                update_mask: mask(&["colour"]),
            })
            .await,
        &["update_mask"],
    );
    // A goal with children cannot change level.
    assert_code(
        s.model()
            .update_goal(pb::UpdateGoalRequest {
                goal: Some(goal("I-b", Tactical, "I-a", None)),
                update_mask: mask(&["level", "parent_id"]),
            })
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        s.model()
            .update_goal(pb::UpdateGoalRequest {
                goal: Some(goal("nope", Strategic, "", None)),
                update_mask: mask(&["weight"]),
            })
            .await,
        Code::NotFound,
    );

    // Delete: refused while children exist.
    assert_code(
        s.model()
            .delete_goal(pb::DeleteGoalRequest { id: "S-a".into() })
            .await,
        Code::FailedPrecondition,
    );
    s.model()
        .delete_goal(pb::DeleteGoalRequest { id: "I-a".into() })
        .await
        .unwrap();
    assert_code(get("I-a").await, Code::NotFound);
    assert_eq!(
        get("I-b").await.unwrap().effective_weight,
        0.5,
        "now the only child"
    );
    assert_code(
        s.model()
            .delete_goal(pb::DeleteGoalRequest { id: "I-a".into() })
            .await,
        Code::NotFound,
    );
}
