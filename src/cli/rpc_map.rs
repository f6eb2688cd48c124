//! Which command reaches each RPC of the API: the table the README's CLI
//! section shows, checked by a test against the descriptors compiled into
//! the binary and the clap definitions, so that an RPC added without a
//! command (or a command renamed) fails the tests. Only the test reads it,
//! so it is compiled for tests only.

/// `(Service/Method, command)`: the command words, then at most one flag
/// that selects the call.
pub const RPC_COMMANDS: &[(&str, &str)] = &[
    ("BacklogService/UpsertItems", "items upsert"),
    ("InsightService/RecordInsights", "insights add"),
    ("InsightService/ListInsights", "insights list"),
    ("InsightService/ForgetCustomer", "insights forget"),
    ("ModelFileService/ApplyValueModel", "apply"),
    ("CustomerService/UpsertSegment", "segments add"),
    ("CustomerService/GetSegment", "segments get"),
    ("CustomerService/ListSegments", "segments list"),
    ("CustomerService/DeleteSegment", "segments remove"),
    ("CustomerService/RollUpBySegment", "segments rollup"),
    ("CustomerService/UpsertDesiredOutcome", "outcomes add"),
    ("CustomerService/GetDesiredOutcome", "outcomes get"),
    ("CustomerService/ListDesiredOutcomes", "outcomes list"),
    ("CustomerService/DeleteDesiredOutcome", "outcomes remove"),
    ("CustomerService/RecordSurveyWave", "outcomes wave"),
    ("ModelFileService/ExportValueModel", "export"),
    ("HistoryService/TakeRankingSnapshot", "history snapshot"),
    ("HistoryService/ListRankingSnapshots", "history list"),
    ("HistoryService/CompareRanking", "since"),
    ("BacklogService/GetItem", "items get"),
    ("BacklogService/BatchGetItems", "items get"),
    ("BacklogService/ListItems", "items"),
    ("BacklogService/LinkItem", "link"),
    ("BacklogService/UnlinkItem", "link --remove"),
    ("BacklogService/ListLinks", "links"),
    ("RollupService/GetGoalRollup", "goals rollup"),
    ("RollupService/GetGoalTree", "goals --tree"),
    ("ScoringService/GetItemScore", "explain"),
    ("ScoringService/RankItems", "rank"),
    ("ScoringService/WatchRanking", "rank --watch"),
    ("SourceService/CreateSource", "sources add"),
    ("SourceService/GetSource", "sources get"),
    ("SourceService/ListSources", "sources list"),
    ("SourceService/UpdateSource", "sources update"),
    ("SourceService/DeleteSource", "sources remove"),
    ("SplitService/ProposeSplits", "split"),
    ("SplitService/ApplySplit", "split --apply"),
    ("SyncService/SyncSource", "sync"),
    ("SyncService/GetSyncStatus", "sources get"),
    ("TokenService/CreateToken", "tokens create"),
    ("TokenService/ListTokens", "tokens list"),
    ("TokenService/RevokeToken", "tokens revoke"),
    ("ValidationService/RecordRelease", "release"),
    ("ValidationService/RecordExperimentResult", "experiment"),
    ("ValidationService/ValidateReleases", "validate"),
    ("ValidationService/GetHypothesisEvidence", "evidence"),
    ("ValidationService/GetMetricTrend", "trend"),
    ("ValueModelService/CreateGoal", "goals add"),
    ("ValueModelService/GetGoal", "goals get"),
    ("ValueModelService/ListGoals", "goals"),
    ("ValueModelService/UpdateGoal", "goals update"),
    ("ValueModelService/DeleteGoal", "goals remove"),
    ("ValueModelService/CreateMetric", "metrics add"),
    ("ValueModelService/GetMetric", "metrics get"),
    ("ValueModelService/ListMetrics", "metrics"),
    ("ValueModelService/UpdateMetric", "metrics update"),
    ("ValueModelService/DeleteMetric", "metrics remove"),
    ("ValueModelService/RecordObservations", "observe"),
    ("ValueModelService/PullMetric", "metrics pull"),
    ("ValueModelService/CreateHypothesis", "hypotheses add"),
    ("ValueModelService/GetHypothesis", "hypotheses get"),
    ("ValueModelService/ListHypotheses", "hypotheses"),
    ("ValueModelService/UpdateHypothesis", "hypotheses update"),
    ("ValueModelService/DeleteHypothesis", "hypotheses remove"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::collections::BTreeSet;

    #[test]
    fn every_rpc_of_the_api_has_a_command_that_exists() {
        let api: BTreeSet<String> = super::super::json::pool()
            .services()
            .filter(|s| s.package_name() == "plumbline.v1")
            .flat_map(|s| {
                s.methods()
                    .map(|m| format!("{}/{}", s.name(), m.name()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mapped: BTreeSet<String> = RPC_COMMANDS.iter().map(|(r, _)| r.to_string()).collect();
        let missing: Vec<&String> = api.difference(&mapped).collect();
        assert!(missing.is_empty(), "RPCs without a command: {missing:?}");
        let stale: Vec<&String> = mapped.difference(&api).collect();
        assert!(
            stale.is_empty(),
            "commands for RPCs that do not exist: {stale:?}"
        );

        let root = super::super::Cli::command();
        for (rpc, command) in RPC_COMMANDS {
            let mut at = &root;
            for word in command.split(' ') {
                if let Some(flag) = word.strip_prefix("--") {
                    assert!(
                        at.get_arguments().any(|a| a.get_long() == Some(flag)),
                        "{rpc}: `plumbline {command}` has no flag --{flag}"
                    );
                } else {
                    at = at.find_subcommand(word).unwrap_or_else(|| {
                        panic!("{rpc}: `plumbline {command}` has no subcommand {word}")
                    });
                }
            }
        }
    }
}
