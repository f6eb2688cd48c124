//! The one table from a gRPC method to what a caller needs to call it.
//!
//! A method missing here is refused to every token (deny by default): a new
//! RPC must be added, and the unit test below fails until it is, for every
//! method of every service in the descriptor set.
//!
//! How methods fall into roles: `read` for every call that only reads;
//! `write` for what changes the team's model and backlog (items, links,
//! goals, metrics, hypotheses, observations, releases, experiment results,
//! validation runs, splits); `admin` for what reaches outside the process or
//! decides who may call (sources, which name a tracker and the variable
//! holding its token; syncs; tokens). Split write-back reaches the tracker
//! too: `ApplySplit` is a write, and its handler asks for admin when
//! `write_back` is set ([`super::require`]).

use std::collections::HashMap;
use std::sync::LazyLock;

use super::{ReflectionAccess, Role};

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without a token.
    Open,
    /// A valid token of at least this role.
    Needs(Role),
    /// Nobody: the method is not in the table.
    Denied,
}

/// Every plumbline method with the role it needs.
const TABLE: &[(&str, Role)] = &[
    // SourceService: a source names a tracker and a token variable.
    ("/plumbline.v1.SourceService/CreateSource", Role::Admin),
    ("/plumbline.v1.SourceService/GetSource", Role::Read),
    ("/plumbline.v1.SourceService/ListSources", Role::Read),
    ("/plumbline.v1.SourceService/UpdateSource", Role::Admin),
    ("/plumbline.v1.SourceService/DeleteSource", Role::Admin),
    // BacklogService
    ("/plumbline.v1.BacklogService/UpsertItems", Role::Write),
    ("/plumbline.v1.BacklogService/GetItem", Role::Read),
    ("/plumbline.v1.BacklogService/BatchGetItems", Role::Read),
    ("/plumbline.v1.BacklogService/ListItems", Role::Read),
    ("/plumbline.v1.BacklogService/LinkItem", Role::Write),
    ("/plumbline.v1.BacklogService/UnlinkItem", Role::Write),
    ("/plumbline.v1.BacklogService/ListLinks", Role::Read),
    // CustomerService: segments, desired outcomes and survey waves are the
    // team's model, like goals and metrics.
    ("/plumbline.v1.CustomerService/UpsertSegment", Role::Write),
    ("/plumbline.v1.CustomerService/GetSegment", Role::Read),
    ("/plumbline.v1.CustomerService/ListSegments", Role::Read),
    ("/plumbline.v1.CustomerService/DeleteSegment", Role::Write),
    (
        "/plumbline.v1.CustomerService/UpsertDesiredOutcome",
        Role::Write,
    ),
    (
        "/plumbline.v1.CustomerService/GetDesiredOutcome",
        Role::Read,
    ),
    (
        "/plumbline.v1.CustomerService/ListDesiredOutcomes",
        Role::Read,
    ),
    (
        "/plumbline.v1.CustomerService/DeleteDesiredOutcome",
        Role::Write,
    ),
    (
        "/plumbline.v1.CustomerService/RecordSurveyWave",
        Role::Write,
    ),
    ("/plumbline.v1.CustomerService/RollUpBySegment", Role::Read),
    // RollupService
    ("/plumbline.v1.RollupService/GetGoalRollup", Role::Read),
    ("/plumbline.v1.RollupService/GetGoalTree", Role::Read),
    // ScoringService
    ("/plumbline.v1.ScoringService/GetItemScore", Role::Read),
    ("/plumbline.v1.ScoringService/RankItems", Role::Read),
    ("/plumbline.v1.ScoringService/WatchRanking", Role::Read),
    // HistoryService: a snapshot is a write of the team's history.
    (
        "/plumbline.v1.HistoryService/TakeRankingSnapshot",
        Role::Write,
    ),
    (
        "/plumbline.v1.HistoryService/ListRankingSnapshots",
        Role::Read,
    ),
    ("/plumbline.v1.HistoryService/CompareRanking", Role::Read),
    // SplitService: proposing writes nothing.
    ("/plumbline.v1.SplitService/ProposeSplits", Role::Read),
    ("/plumbline.v1.SplitService/ApplySplit", Role::Write),
    // SyncService: a sync calls the tracker with the source's token.
    ("/plumbline.v1.SyncService/SyncSource", Role::Admin),
    ("/plumbline.v1.SyncService/GetSyncStatus", Role::Read),
    // InsightService: recording is a write like observations; forgetting
    // a customer erases evidence the whole team relies on and answers a
    // data-protection request, so it takes an admin, who is accountable
    // for it (the log records the erasure and the token's name).
    ("/plumbline.v1.InsightService/RecordInsights", Role::Write),
    ("/plumbline.v1.InsightService/ListInsights", Role::Read),
    ("/plumbline.v1.InsightService/ForgetCustomer", Role::Admin),
    // ValidationService
    ("/plumbline.v1.ValidationService/RecordRelease", Role::Write),
    (
        "/plumbline.v1.ValidationService/RecordExperimentResult",
        Role::Write,
    ),
    (
        "/plumbline.v1.ValidationService/ValidateReleases",
        Role::Write,
    ),
    (
        "/plumbline.v1.ValidationService/GetHypothesisEvidence",
        Role::Read,
    ),
    ("/plumbline.v1.ValidationService/GetMetricTrend", Role::Read),
    // ValueModelService
    ("/plumbline.v1.ValueModelService/CreateGoal", Role::Write),
    ("/plumbline.v1.ValueModelService/GetGoal", Role::Read),
    ("/plumbline.v1.ValueModelService/ListGoals", Role::Read),
    ("/plumbline.v1.ValueModelService/UpdateGoal", Role::Write),
    ("/plumbline.v1.ValueModelService/DeleteGoal", Role::Write),
    ("/plumbline.v1.ValueModelService/CreateMetric", Role::Write),
    ("/plumbline.v1.ValueModelService/GetMetric", Role::Read),
    ("/plumbline.v1.ValueModelService/ListMetrics", Role::Read),
    ("/plumbline.v1.ValueModelService/UpdateMetric", Role::Write),
    ("/plumbline.v1.ValueModelService/DeleteMetric", Role::Write),
    (
        "/plumbline.v1.ValueModelService/RecordObservations",
        Role::Write,
    ),
    // A pull calls the metric's source with the secret its settings name.
    ("/plumbline.v1.ValueModelService/PullMetric", Role::Admin),
    (
        "/plumbline.v1.ValueModelService/CreateHypothesis",
        Role::Write,
    ),
    ("/plumbline.v1.ValueModelService/GetHypothesis", Role::Read),
    ("/plumbline.v1.ValueModelService/ListHypotheses", Role::Read),
    (
        "/plumbline.v1.ValueModelService/UpdateHypothesis",
        Role::Write,
    ),
    (
        "/plumbline.v1.ValueModelService/DeleteHypothesis",
        Role::Write,
    ),
    // ModelFileService: applying asks for admin when the plan touches a
    // source (see api/apply.rs).
    (
        "/plumbline.v1.ModelFileService/ApplyValueModel",
        Role::Write,
    ),
    (
        "/plumbline.v1.ModelFileService/ExportValueModel",
        Role::Read,
    ),
    // TokenService: who may call.
    ("/plumbline.v1.TokenService/CreateToken", Role::Admin),
    ("/plumbline.v1.TokenService/ListTokens", Role::Admin),
    ("/plumbline.v1.TokenService/RevokeToken", Role::Admin),
];

/// Health is open to every caller: probes (Kubernetes, load balancers)
/// carry no token.
const HEALTH: &str = "/grpc.health.v1.Health/";
const REFLECTION: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

static ROLES: LazyLock<HashMap<&'static str, Role>> =
    LazyLock::new(|| TABLE.iter().copied().collect());

/// What a call of `path` (`/package.Service/Method`) needs.
pub fn access(path: &str, reflection: ReflectionAccess) -> Access {
    if let Some(role) = ROLES.get(path) {
        return Access::Needs(*role);
    }
    if path.starts_with(HEALTH) {
        return Access::Open;
    }
    if REFLECTION.iter().any(|p| path.starts_with(p)) {
        return match reflection {
            ReflectionAccess::Open => Access::Open,
            // Off: the service is not registered; a token still goes first.
            ReflectionAccess::Read | ReflectionAccess::Off => Access::Needs(Role::Read),
        };
    }
    Access::Denied
}

/// Whether the call is a write or an admin call, which the log names.
pub fn is_logged(need: Role) -> bool {
    need >= Role::Write
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn every_method_of_every_service_has_a_role_and_the_table_no_stale_entry() {
        let fds = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("the build writes a valid descriptor set");
        let mut paths = Vec::new();
        for file in &fds.file {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        assert!(paths.len() > 40, "{paths:?}");
        for p in &paths {
            assert!(
                matches!(access(p, ReflectionAccess::Read), Access::Needs(_)),
                "{p} has no role in auth::methods::TABLE: add it there"
            );
        }
        for (p, _) in TABLE {
            assert!(
                paths.iter().any(|q| q == p),
                "{p} is in the table but no service has it"
            );
        }
        assert_eq!(ROLES.len(), TABLE.len(), "no method twice in the table");
    }

    #[test]
    fn health_is_open_reflection_follows_the_setting_and_the_rest_is_denied() {
        assert_eq!(
            access("/grpc.health.v1.Health/Check", ReflectionAccess::Off),
            Access::Open
        );
        let r = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
        assert_eq!(access(r, ReflectionAccess::Open), Access::Open);
        assert_eq!(access(r, ReflectionAccess::Read), Access::Needs(Role::Read));
        assert_eq!(
            access(
                "/plumbline.v1.SourceService/DeleteSource",
                ReflectionAccess::Open
            ),
            Access::Needs(Role::Admin)
        );
        assert_eq!(
            access("/plumbline.v1.SourceService/Nope", ReflectionAccess::Open),
            Access::Denied
        );
        assert_eq!(access("/", ReflectionAccess::Open), Access::Denied);
    }
}
