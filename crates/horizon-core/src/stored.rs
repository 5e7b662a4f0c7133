//! The typed read model of a stored study: what the spec a study was stored with says, read
//! back field by field for every command that reads a study (tables, `analyze`, the report).
//!
//! A study run from a study file stores its checked [`StudySpec`](crate::StudySpec) as JSON; an
//! imported one stores its name, objective and where it came from. A field that is absent is
//! `None` (an imported study has no budget or space); a field that is present but does not read
//! is an error naming the field, never silently dropped (a study whose search space could not
//! be read would otherwise be analyzed without its ranges, without a word).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use crate::analysis_config::AnalysisConfig;
use crate::claim::RoundsPolicy;
use crate::rounds::ParamRole;
use crate::sampler::SamplerSpec;
use crate::space::SearchSpace;
use crate::spec::{Objective, RoundSpec};

/// A stored spec that does not read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the stored spec of study {study:?}: {field}: {problem}")]
pub struct StoredSpecError {
    pub study: String,
    /// The field, as a JSON path (`space`, `objective.direction`).
    pub field: String,
    pub problem: String,
}

/// What a stored study's spec says.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSpec {
    pub name: String,
    /// `[study] directory`, relative to the study file.
    pub directory: Option<String>,
    pub notes: Option<String>,
    pub trials: Option<u64>,
    pub max_train_steps: Option<u64>,
    pub eval_every: Option<u64>,
    pub seed: Option<u64>,
    pub objective: Option<Objective>,
    /// The built-in workload the trainer is, if it is one.
    pub workload: Option<String>,
    /// The trainer's command template, as stored.
    pub command: Option<serde_json::Value>,
    pub space: Option<SearchSpace>,
    pub sampler: Option<SamplerSpec>,
    /// The ladder's rung budgets, for a study with a `[ladder]`.
    pub ladder_rungs: Option<Vec<u64>>,
    pub rounds: Vec<RoundSpec>,
    pub roles: BTreeMap<String, ParamRole>,
    pub analysis: Option<AnalysisConfig>,
    /// An imported study: the source it was read from, and its format.
    pub imported_from: Option<String>,
    pub format: Option<String>,
    /// The search-space file an imported study was given (`horizon import --space`).
    pub space_from: Option<String>,
    /// The spec as stored, for what has no typed field (the report shows the study file).
    pub raw: serde_json::Value,
}

impl StoredSpec {
    /// Read the stored spec of study `study` (its `spec_json`).
    pub fn parse(study: &str, json: &str) -> Result<StoredSpec, StoredSpecError> {
        let err = |field: &str, problem: String| StoredSpecError { study: study.to_string(), field: field.into(), problem };
        let raw: serde_json::Value = serde_json::from_str(json).map_err(|e| err("(the whole spec)", e.to_string()))?;
        if !raw.is_object() {
            return Err(err("(the whole spec)", "not a JSON object".into()));
        }
        fn field<T: DeserializeOwned>(
            raw: &serde_json::Value,
            path: &[&str],
            err: &dyn Fn(&str, String) -> StoredSpecError,
        ) -> Result<Option<T>, StoredSpecError> {
            let mut v = raw;
            for key in path {
                match v.get(key) {
                    Some(next) => v = next,
                    None => return Ok(None),
                }
            }
            if v.is_null() {
                return Ok(None);
            }
            serde_json::from_value(v.clone()).map(Some).map_err(|e| err(&path.join("."), e.to_string()))
        }
        let ladder: Option<crate::ladder::Ladder> = field(&raw, &["ladder"], &err)?;
        Ok(StoredSpec {
            name: field(&raw, &["name"], &err)?.unwrap_or_else(|| study.to_string()),
            directory: field(&raw, &["directory"], &err)?,
            notes: field::<String>(&raw, &["notes"], &err)?.filter(|n| !n.is_empty()),
            trials: field(&raw, &["trials"], &err)?,
            max_train_steps: field(&raw, &["max_train_steps"], &err)?,
            eval_every: field(&raw, &["eval_every"], &err)?,
            seed: field(&raw, &["seed"], &err)?,
            objective: field(&raw, &["objective"], &err)?,
            workload: field(&raw, &["trainer", "workload"], &err)?,
            command: field(&raw, &["trainer", "command"], &err)?,
            space: field(&raw, &["space"], &err)?,
            sampler: field(&raw, &["sampler"], &err)?,
            ladder_rungs: ladder.map(|l| l.rungs),
            rounds: field(&raw, &["rounds"], &err)?.unwrap_or_default(),
            roles: field(&raw, &["roles"], &err)?.unwrap_or_default(),
            analysis: field(&raw, &["analysis"], &err)?,
            imported_from: field(&raw, &["imported_from"], &err)?,
            format: field(&raw, &["format"], &err)?,
            space_from: field(&raw, &["space_from"], &err)?,
            raw,
        })
    }

    /// The budgets of the study's stages: its ladder's rungs, or its rounds' budgets.
    pub fn stage_budgets(&self) -> Option<Vec<u64>> {
        match &self.ladder_rungs {
            Some(rungs) => Some(rungs.clone()),
            None if !self.rounds.is_empty() => Some(self.rounds.iter().map(|r| r.max_train_steps).collect()),
            None => None,
        }
    }

    /// The rounds policy the study ran with, for a study in rounds (`None` otherwise, or when
    /// the spec lacks what the policy needs).
    pub fn rounds_policy(&self) -> Option<RoundsPolicy> {
        if self.rounds.is_empty() {
            return None;
        }
        Some(RoundsPolicy {
            rounds: self.rounds.clone(),
            space: self.space.clone()?,
            sampler: self.sampler.clone().unwrap_or_default(),
            seed: self.seed?,
            direction: self.objective.as_ref()?.direction,
            roles: self.roles.clone(),
            workload: self.workload.clone(),
            last: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_spec_reads_back_typed() {
        let spec = crate::StudySpec::parse(
            r#"
            [study]
            name = "s"
            trials = 4
            max_train_steps = 100
            eval_every = 10
            [objective]
            metric = "valid/loss"
            direction = "minimize"
            [trainer]
            workload = "digits-mlp"
            [params.learning_rate]
            type = "float"
            low = 0.01
            high = 1.0
            scale = "log"
            [[round]]
            max_train_steps = 50
            trials = 4
            [[round]]
            max_train_steps = 100
            carry = 1
            trials = 1
            "#,
            "s.toml",
        )
        .unwrap();
        let stored = StoredSpec::parse("s", &serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(stored.space.as_ref(), Some(&spec.space));
        assert_eq!(stored.objective.as_ref(), Some(&spec.objective));
        assert_eq!((stored.trials, stored.max_train_steps, stored.eval_every), (Some(4), Some(100), Some(10)));
        assert_eq!(stored.workload.as_deref(), Some("digits-mlp"));
        assert_eq!(stored.rounds, spec.rounds);
        assert_eq!(stored.stage_budgets(), Some(vec![50, 100]));
        assert_eq!(stored.analysis, Some(spec.analysis.clone()));
        let policy = stored.rounds_policy().unwrap();
        assert_eq!(policy.roles, spec.roles);
    }

    #[test]
    fn an_imported_spec_has_what_it_has_and_a_broken_field_is_named() {
        let stored = StoredSpec::parse(
            "opda",
            r#"{"name":"opda","objective":{"metric":"valid/error","direction":"minimize"},"imported_from":"/data/x.jsonl","format":"jsonl"}"#,
        )
        .unwrap();
        assert_eq!(stored.imported_from.as_deref(), Some("/data/x.jsonl"));
        assert_eq!(stored.space, None);
        assert_eq!(stored.max_train_steps, None);
        let err = StoredSpec::parse("s", r#"{"name":"s","space":{"params":[{"name":"x","kind":"nonsense"}]}}"#).unwrap_err();
        assert_eq!(err.field, "space");
        assert!(err.to_string().starts_with("the stored spec of study \"s\": space: "), "{err}");
        let err = StoredSpec::parse("s", r#"{"objective":{"metric":"m","direction":"sideways"}}"#).unwrap_err();
        assert_eq!(err.field, "objective");
    }
}
