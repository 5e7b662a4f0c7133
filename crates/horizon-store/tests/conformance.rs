//! The storage contract (see the crate docs), checked for every backend.
//!
//! The checks in [`suite`] take a `&dyn Storage` and nothing else, so another backend runs the
//! same suite by instantiating [`conformance!`] with its own constructor. [`concurrent_claims`]
//! takes a factory instead, so that every worker gets its own connection (as separate
//! `horizon run` processes do).

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use horizon_core::Direction;
use horizon_core::claim::{ClaimPolicy, FixedBudget, KnownPrefix, LadderPolicy};
use horizon_core::ladder::Ladder;
use horizon_core::selection::Selection;
use horizon_core::trial::RungEntry;
use horizon_core::trial::{Lease, TrialRecord, TrialState};
use horizon_core::{MetricPoint, ParamValue, Params};
use horizon_store::{
    Access, Claim, ClaimRequest, ClaimedTrial, Finish, ImportedTrial, NewStudy, PostgresStorage, Requeue, SqliteStorage, Storage,
    StoreError, StudyRecord, TrialId,
};

// ---------------------------------------------------------------------------------------------
// Helpers

fn lease(worker: &str, at: f64) -> Lease {
    Lease { worker: worker.into(), host: format!("host-of-{worker}"), pid: 4242, heartbeat_at: at, timeout: Some(60.0) }
}

fn params_for(index: u64) -> Params {
    Params(vec![("x".into(), ParamValue::Int(index as i64)), ("opt".into(), ParamValue::Str("adam".into()))])
}

fn sample(index: u64) -> Result<Params, String> {
    Ok(params_for(index))
}

fn study(s: &dyn Storage, name: &str) -> StudyRecord {
    s.open_or_create_study(&NewStudy {
        name: name.into(),
        spec_json: format!(r#"{{"name":"{name}"}}"#),
        identity_json: format!(r#"{{"id":"{name}"}}"#),
    })
    .unwrap()
}

fn claim_as(s: &dyn Storage, study: &StudyRecord, lease: &Lease, max_trials: u64) -> Option<TrialRecord> {
    let policy = FixedBudget { trials: max_trials, max_train_steps: 1000 };
    let request = ClaimRequest { lease, policy: &policy, sample: &sample };
    match s.claim_trial(study.id, &request).unwrap() {
        Claim::Run(c) => Some(c.trial),
        Claim::Wait => panic!("a fixed budget never waits"),
        Claim::Done => None,
    }
}

fn claim(s: &dyn Storage, study: &StudyRecord, max_trials: u64) -> Option<TrialRecord> {
    claim_as(s, study, &lease("w1", 100.0), max_trials)
}

fn ladder_policy(trials: u64, rungs: &[u64], decay: Option<u64>) -> LadderPolicy {
    LadderPolicy {
        ladder: Ladder::explicit(rungs.to_vec(), 3).unwrap(),
        trials,
        direction: Direction::Minimize,
        resume: true,
        known_prefix: decay.map(|d| Box::new(move |_: &Params, budget: u64| budget.checked_sub(d)) as Box<KnownPrefix>),
    }
}

fn request<'a>(policy: &'a dyn ClaimPolicy, lease: &'a Lease) -> ClaimRequest<'a> {
    ClaimRequest { lease, policy, sample: &sample }
}

fn claim_with(s: &dyn Storage, study: &StudyRecord, policy: &dyn ClaimPolicy, lease: &Lease) -> Option<ClaimedTrial> {
    match s.claim_trial(study.id, &request(policy, lease)).unwrap() {
        Claim::Run(c) => Some(*c),
        _ => None,
    }
}

fn finish(state: TrialState) -> Finish {
    Finish {
        state,
        message: None,
        selection: None,
        counts_as_failure: false,
        exit_code: Some(0),
        at: 500.0,
        steps_run: 0,
        budget_independent_until: None,
    }
}

fn selection(best: (u64, f64), last: (u64, f64)) -> Selection {
    Selection { best_step: best.0, best_value: best.1, final_step: last.0, final_value: last.1, evaluations: 3 }
}

fn point(step: u64, name: &str, value: f64) -> MetricPoint {
    MetricPoint { step, name: name.into(), value }
}

/// A finished run made elsewhere, read from line `line` of `runs.jsonl` (a different run for
/// every line: its key is `run-LINE`).
fn imported(line: u64, state: TrialState, metrics: Vec<MetricPoint>) -> ImportedTrial {
    ImportedTrial {
        params: Params(vec![("lr".into(), ParamValue::Float(0.1 * line as f64))]),
        max_train_steps: 300,
        state,
        message: (state != TrialState::Complete).then(|| format!("{state} elsewhere")),
        selection: Some(selection((100, line as f64), (300, 2.0 * line as f64))),
        metrics,
        run_key: format!("run-{line}"),
        origin: format!("/data/runs.jsonl:{line}"),
        source: Some("a colleague's sweep".into()),
        at: 900.0 + line as f64,
    }
}

/// Everything a failed write could have changed in a study: its record, trials and metrics.
fn snapshot(s: &dyn Storage, st: &StudyRecord) -> (StudyRecord, Vec<TrialRecord>, Vec<Vec<MetricPoint>>) {
    let trials = s.trials(st.id).unwrap();
    let metrics = trials.iter().map(|t| s.metrics(t.id).unwrap()).collect();
    (s.study(&st.name).unwrap().unwrap(), trials, metrics)
}

fn assert_not_writable<T: std::fmt::Debug>(
    result: horizon_store::Result<T>,
    trial: TrialId,
    attempt: u32,
    state: TrialState,
    current: u32,
) {
    match result {
        Err(StoreError::NotWritable { trial: t, attempt: a, state: s, current: c }) => {
            assert_eq!((t, a, s, c), (trial, attempt, state, current))
        }
        other => panic!("expected NotWritable for trial {trial} attempt {attempt}, got {other:?}"),
    }
}

/// Every write a running attempt may make, each expected to be refused.
fn assert_all_writes_refused(s: &dyn Storage, trial: TrialId, attempt: u32, state: TrialState, current: u32) {
    assert_not_writable(s.heartbeat(trial, attempt), trial, attempt, state, current);
    assert_not_writable(s.append_metrics(trial, attempt, &[point(1, "m", 1.0)]), trial, attempt, state, current);
    assert_not_writable(s.append_warnings(trial, attempt, &["w".into()]), trial, attempt, state, current);
    assert_not_writable(s.record_checkpoint(trial, attempt, 1, "/ckpt"), trial, attempt, state, current);
    assert_not_writable(s.finish_attempt(trial, attempt, &finish(TrialState::Complete)), trial, attempt, state, current);
}

// ---------------------------------------------------------------------------------------------
// The contract, backend-neutral

mod suite {
    use super::*;

    pub fn studies_are_created_once_and_keep_their_identity(s: &dyn Storage) {
        assert!(s.studies().unwrap().is_empty());
        assert_eq!(s.study("a").unwrap(), None);
        let a = study(s, "a");
        assert_eq!((a.name.as_str(), a.next_sample_index), ("a", 0));
        assert!(a.created_at > 1.6e9, "created_at is seconds since the epoch: {}", a.created_at);
        let b = study(s, "b");
        assert_ne!(a.id, b.id);

        let again = s
            .open_or_create_study(&NewStudy {
                name: "a".into(),
                spec_json: "{\"v\":2}".into(),
                identity_json: "{\"other\":1}".into(),
            })
            .unwrap();
        assert_eq!(again.id, a.id);
        assert_eq!(again.spec_json, "{\"v\":2}", "the spec is updated");
        assert_eq!(again.identity_json, a.identity_json, "the identity is kept");
        assert_eq!(again.created_at, a.created_at);
        assert_eq!(s.study("a").unwrap(), Some(again.clone()));

        let all = s.studies().unwrap();
        assert_eq!(all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["a", "b"], "oldest first");
        assert_eq!(all[0], again);
    }

    pub fn trials_can_be_listed_by_state(s: &dyn Storage) {
        let st = study(s, "s");
        let a = claim(s, &st, 3).unwrap();
        let b = claim(s, &st, 3).unwrap();
        let c = claim(s, &st, 3).unwrap();
        s.finish_attempt(b.id, b.attempt, &finish(TrialState::Complete)).unwrap();
        s.finish_attempt(c.id, c.attempt, &finish(TrialState::Waiting)).unwrap();
        let numbers = |state| s.trials_in_state(st.id, state).unwrap().iter().map(|t| t.number).collect::<Vec<_>>();
        assert_eq!(numbers(TrialState::Running), [a.number]);
        assert_eq!(numbers(TrialState::Complete), [b.number]);
        assert_eq!(numbers(TrialState::Waiting), [c.number]);
        assert!(numbers(TrialState::Failed).is_empty());
        assert!(matches!(s.trials_in_state(st.id + 1000, TrialState::Running), Err(StoreError::NoStudy(_))));
    }

    pub fn unknown_ids_are_errors(s: &dyn Storage) {
        let st = study(s, "s");
        let missing_study = st.id + 1000;
        let l = lease("w", 1.0);
        let policy = FixedBudget { trials: 5, max_train_steps: 10 };
        let request = ClaimRequest { lease: &l, policy: &policy, sample: &sample };
        assert!(matches!(s.claim_trial(missing_study, &request), Err(StoreError::NoStudy(id)) if id == missing_study));
        assert!(matches!(s.trials(missing_study), Err(StoreError::NoStudy(_))));
        assert!(matches!(s.snapshot(missing_study), Err(StoreError::NoStudy(_))));
        assert!(matches!(s.study_metric(missing_study, "m"), Err(StoreError::NoStudy(_))));
        assert!(s.trials(st.id).unwrap().is_empty());

        let t = 987_654;
        assert!(matches!(s.trial(t), Err(StoreError::NoTrial(id)) if id == t));
        assert!(matches!(s.heartbeat(t, 1), Err(StoreError::NoTrial(_))));
        assert!(matches!(s.append_metrics(t, 1, &[point(1, "m", 1.0)]), Err(StoreError::NoTrial(_))));
        assert!(matches!(s.append_warnings(t, 1, &["x".into()]), Err(StoreError::NoTrial(_))));
        assert!(matches!(s.record_checkpoint(t, 1, 1, "/c"), Err(StoreError::NoTrial(_))));
        assert!(matches!(s.mark_checkpoint_deleted(t, 1), Err(StoreError::NoTrial(_))));
        assert!(matches!(s.finish_attempt(t, 1, &finish(TrialState::Complete)), Err(StoreError::NoTrial(_))));
        assert!(matches!(s.requeue_abandoned(t, 1, "w", None, "gone", 1.0), Err(StoreError::NoTrial(_))));
        assert!(matches!(s.metrics(t), Err(StoreError::NoTrial(_))));
        assert!(matches!(s.checkpoints(t), Err(StoreError::NoTrial(_))));
        assert!(matches!(s.warnings(t), Err(StoreError::NoTrial(_))));
        assert!(matches!(s.attempts(t), Err(StoreError::NoTrial(_))));
    }

    pub fn claims_number_trials_and_allocate_indices_without_gaps(s: &dyn Storage) {
        let st = study(s, "s");
        let l = lease("w1", 123.5);
        let mut ids = BTreeSet::new();
        for n in 0..5u64 {
            let t = claim_as(s, &st, &l, 5).expect("the study is not full");
            assert_eq!((t.number, t.sample_index), (n, Some(n)));
            assert_eq!(t.params, params_for(n), "the parameters come from the sample index");
            assert_eq!((t.state, t.attempt, t.failures), (TrialState::Running, 1, 0));
            assert_eq!(t.max_train_steps, 1000);
            let held = t.lease.clone().unwrap();
            assert_eq!(Lease { heartbeat_at: l.heartbeat_at, ..held.clone() }, l, "the claiming worker's lease");
            assert_ne!(held.heartbeat_at, 123.5, "timed by the database's clock, not the worker's");
            assert_eq!(t.started_at, Some(held.heartbeat_at));
            assert_eq!((t.best_step, t.final_step, t.finished_at, t.message.as_deref()), (None, None, None, None));
            assert_eq!(s.trial(t.id).unwrap(), t, "the claim returns the stored record");
            assert!(ids.insert(t.id), "trial ids are unique");
        }
        assert_eq!(claim(s, &st, 5), None, "full");
        assert_eq!(s.study("s").unwrap().unwrap().next_sample_index, 5);
        let numbers: Vec<u64> = s.trials(st.id).unwrap().iter().map(|t| t.number).collect();
        assert_eq!(numbers, [0, 1, 2, 3, 4], "trials come by number");
    }

    pub fn max_trials_is_respected_per_study(s: &dyn Storage) {
        let a = study(s, "a");
        let b = study(s, "b");
        assert_eq!(claim(s, &a, 0), None);
        assert!(claim(s, &a, 2).is_some());
        assert!(claim(s, &a, 2).is_some());
        assert_eq!(claim(s, &a, 2), None);
        assert_eq!(claim(s, &a, 1), None, "a lower budget creates nothing");
        assert_eq!(s.trials(a.id).unwrap().len(), 2);

        let t = claim(s, &b, 1).expect("studies are counted separately");
        assert_eq!((t.number, t.sample_index), (0, Some(0)), "each study has its own numbers and indices");
        assert_eq!(claim(s, &b, 1), None);

        let t = claim(s, &a, 3).expect("a higher budget creates more");
        assert_eq!((t.number, t.sample_index), (2, Some(2)));
    }

    pub fn waiting_trials_are_claimed_first_and_start_fresh(s: &dyn Storage) {
        let st = study(s, "s");
        let t0 = claim(s, &st, 10).unwrap();
        let t1 = claim(s, &st, 10).unwrap();
        let t2 = claim(s, &st, 10).unwrap();
        s.append_metrics(t1.id, 1, &[point(10, "loss", 0.5), point(20, "loss", 0.4)]).unwrap();
        s.append_metrics(t0.id, 1, &[point(10, "loss", 0.7)]).unwrap();
        let interrupted = Finish {
            state: TrialState::Waiting,
            message: Some("interrupted".into()),
            selection: Some(selection((20, 0.4), (20, 0.4))),
            counts_as_failure: false,
            exit_code: None,
            at: 300.0,
            steps_run: 0,
            budget_independent_until: None,
        };
        // Requeue 2 before 1: the lowest number is claimed first, not the first requeued.
        s.finish_attempt(t2.id, 1, &interrupted).unwrap();
        s.finish_attempt(t1.id, 1, &interrupted).unwrap();
        let waiting = s.trial(t1.id).unwrap();
        assert_eq!((waiting.state, waiting.lease.as_ref(), waiting.best_step), (TrialState::Waiting, None, Some(20)));

        let l2 = lease("w2", 400.0);
        let before = s.now().unwrap();
        let again = claim_as(s, &st, &l2, 10).unwrap();
        let after = s.now().unwrap();
        assert_eq!(again.id, t1.id, "the waiting trial with the lowest number comes first");
        assert_eq!((again.number, again.sample_index, again.params.clone()), (1, Some(1), params_for(1)));
        assert_eq!((again.state, again.attempt), (TrialState::Running, 2));
        // The lease is the claiming worker's, timed by the database's clock (not the 400 it sent).
        let held = again.lease.clone().unwrap();
        assert_eq!((held.worker.as_str(), held.host.as_str(), held.pid), (l2.worker.as_str(), l2.host.as_str(), l2.pid));
        assert!(before <= held.heartbeat_at && held.heartbeat_at <= after, "{before} <= {} <= {after}", held.heartbeat_at);
        assert_eq!(again.started_at, Some(held.heartbeat_at));
        assert!(s.metrics(t1.id).unwrap().is_empty(), "a fresh attempt starts without the old metrics");
        assert_eq!(s.metrics(t0.id).unwrap().len(), 1, "other trials keep theirs");

        let again2 = claim(s, &st, 10).unwrap();
        assert_eq!((again2.id, again2.attempt), (t2.id, 2));
        let new = claim(s, &st, 10).unwrap();
        assert_eq!((new.number, new.sample_index, new.attempt), (3, Some(3), 1), "then new trials");
        assert_eq!(s.study("s").unwrap().unwrap().next_sample_index, 4, "requeued trials consume no index");

        // A waiting trial is claimed even when the study is full.
        s.finish_attempt(new.id, 1, &interrupted).unwrap();
        let full = claim(s, &st, 4).unwrap();
        assert_eq!((full.id, full.attempt), (new.id, 2));
        assert_eq!(claim(s, &st, 4), None);
    }

    pub fn finishing_records_the_outcome_and_closes_the_trial(s: &dyn Storage) {
        let st = study(s, "s");
        let t = claim(s, &st, 10).unwrap();
        s.finish_attempt(
            t.id,
            1,
            &Finish {
                state: TrialState::Complete,
                message: None,
                selection: Some(selection((200, 0.25), (300, 0.5))),
                counts_as_failure: false,
                exit_code: Some(0),
                at: 777.0,
                steps_run: 0,
                budget_independent_until: None,
            },
        )
        .unwrap();
        let done = s.trial(t.id).unwrap();
        assert_eq!(done.state, TrialState::Complete);
        assert_eq!((done.best_step, done.best_value), (Some(200), Some(0.25)));
        assert_eq!((done.final_step, done.final_value), (Some(300), Some(0.5)));
        assert_eq!((done.finished_at, done.lease.as_ref(), done.failures), (Some(777.0), None, 0));
        assert_eq!(done.started_at, t.started_at);

        let u = claim(s, &st, 10).unwrap();
        s.finish_attempt(
            u.id,
            1,
            &Finish {
                state: TrialState::Failed,
                message: Some("exit status 3".into()),
                selection: None,
                counts_as_failure: true,
                exit_code: Some(3),
                at: 800.0,
                steps_run: 0,
                budget_independent_until: None,
            },
        )
        .unwrap();
        let failed = s.trial(u.id).unwrap();
        assert_eq!((failed.state, failed.failures, failed.message.as_deref()), (TrialState::Failed, 1, Some("exit status 3")));
        assert_eq!((failed.best_step, failed.best_value, failed.final_value), (None, None, None));
    }

    pub fn a_finished_trial_is_never_written_again(s: &dyn Storage) {
        let st = study(s, "s");
        for state in [TrialState::Complete, TrialState::Diverged, TrialState::Failed] {
            let t = claim(s, &st, 10).unwrap();
            s.finish_attempt(t.id, 1, &finish(state)).unwrap();
            assert_all_writes_refused(s, t.id, 1, state, 1);
            assert_all_writes_refused(s, t.id, 2, state, 1);
            assert!(!s.requeue_abandoned(t.id, 1, "w1", None, "gone", 1.0).unwrap(), "a finished trial is not requeued");
            let after = s.trial(t.id).unwrap();
            assert_eq!((after.state, after.attempt, after.finished_at), (state, 1, Some(500.0)));
            assert!(s.metrics(t.id).unwrap().is_empty() && s.warnings(t.id).unwrap().is_empty());
            assert!(s.checkpoints(t.id).unwrap().is_empty());
        }
        // Finished trials are not claimed again.
        let ids: BTreeSet<TrialId> = s.trials(st.id).unwrap().iter().map(|t| t.id).collect();
        let next = claim(s, &st, 10).unwrap();
        assert!(!ids.contains(&next.id));
        assert_eq!(next.number, 3);
    }

    pub fn only_the_current_attempt_may_write(s: &dyn Storage) {
        let st = study(s, "s");
        let t = claim(s, &st, 10).unwrap();
        s.finish_attempt(t.id, 1, &finish(TrialState::Waiting)).unwrap();
        assert_all_writes_refused(s, t.id, 1, TrialState::Waiting, 1);

        let again = claim_as(s, &st, &lease("w2", 200.0), 10).unwrap();
        assert_eq!((again.id, again.attempt), (t.id, 2));
        assert_all_writes_refused(s, t.id, 1, TrialState::Running, 2);
        assert_all_writes_refused(s, t.id, 3, TrialState::Running, 2);
        assert!(!s.requeue_abandoned(t.id, 1, "w1", None, "stale", 1.0).unwrap(), "a stale attempt cannot requeue");

        // The current attempt can still do everything.
        let before = s.now().unwrap();
        s.heartbeat(t.id, 2).unwrap();
        let after = s.now().unwrap();
        let at = s.trial(t.id).unwrap().lease.unwrap().heartbeat_at;
        assert!(before <= at && at <= after, "the heartbeat is the database's time: {before} <= {at} <= {after}");
        s.append_metrics(t.id, 2, &[point(1, "m", 1.0)]).unwrap();
        s.append_warnings(t.id, 2, &["odd line".into()]).unwrap();
        s.record_checkpoint(t.id, 2, 1, "/c/1").unwrap();
        s.finish_attempt(t.id, 2, &finish(TrialState::Complete)).unwrap();
        assert_eq!(s.trial(t.id).unwrap().state, TrialState::Complete);
    }

    pub fn metrics_are_unique_per_step_and_name(s: &dyn Storage) {
        let st = study(s, "s");
        let a = claim(s, &st, 10).unwrap();
        let b = claim(s, &st, 10).unwrap();
        s.append_metrics(b.id, 1, &[point(20, "loss", 2.0), point(10, "loss", 1.0)]).unwrap();
        s.append_metrics(a.id, 1, &[point(10, "loss", 3.0), point(10, "acc", 0.1), point(5, "loss", 4.0)]).unwrap();
        s.append_metrics(a.id, 1, &[point(10, "loss", 9.0), point(10, "loss", 8.0)]).unwrap();
        s.append_metrics(a.id, 1, &[]).unwrap();
        assert_eq!(
            s.metrics(a.id).unwrap(),
            [point(5, "loss", 4.0), point(10, "acc", 0.1), point(10, "loss", 8.0)],
            "by step then name, the last report of a (step, name) wins"
        );
        assert_eq!(s.metrics(b.id).unwrap(), [point(10, "loss", 1.0), point(20, "loss", 2.0)]);
        assert_eq!(
            s.study_metric(st.id, "loss").unwrap(),
            [(a.id, 5, 4.0), (a.id, 10, 8.0), (b.id, 10, 1.0), (b.id, 20, 2.0)],
            "by trial number then step"
        );
        assert_eq!(s.study_metric(st.id, "acc").unwrap(), [(a.id, 10, 0.1)]);
        assert!(s.study_metric(st.id, "nope").unwrap().is_empty());

        let other = study(s, "other");
        let c = claim(s, &other, 10).unwrap();
        s.append_metrics(c.id, 1, &[point(1, "loss", 5.0)]).unwrap();
        assert_eq!(s.study_metric(st.id, "loss").unwrap().len(), 4, "other studies are not mixed in");
    }

    pub fn non_finite_values_round_trip(s: &dyn Storage) {
        let st = study(s, "s");
        let t = claim(s, &st, 10).unwrap();
        let values = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, f64::MIN_POSITIVE, 1e300];
        let points: Vec<_> = values.iter().enumerate().map(|(i, &v)| point(i as u64, "loss", v)).collect();
        s.append_metrics(t.id, 1, &points).unwrap();
        let back = s.metrics(t.id).unwrap();
        assert_eq!(back.len(), values.len());
        for (p, v) in back.iter().zip(values) {
            assert!(p.value.is_nan() && v.is_nan() || p.value == v, "step {}: {} != {v}", p.step, p.value);
        }
        let column = s.study_metric(st.id, "loss").unwrap();
        assert!(column[0].2.is_nan());
        assert_eq!(column[1].2, f64::INFINITY);
        assert_eq!(column[2].2, f64::NEG_INFINITY);

        // Replacing NaN by a number and back.
        s.append_metrics(t.id, 1, &[point(0, "loss", 1.5)]).unwrap();
        assert_eq!(s.metrics(t.id).unwrap()[0].value, 1.5);
        s.append_metrics(t.id, 1, &[point(0, "loss", f64::NAN)]).unwrap();
        assert!(s.metrics(t.id).unwrap()[0].value.is_nan());

        // A diverged trial's last evaluation.
        let f = Finish { selection: Some(selection((0, 1.5), (9, f64::NAN))), ..finish(TrialState::Diverged) };
        s.finish_attempt(t.id, 1, &f).unwrap();
        let done = s.trial(t.id).unwrap();
        assert_eq!((done.best_step, done.best_value, done.final_step), (Some(0), Some(1.5), Some(9)));
        assert!(done.final_value.unwrap().is_nan(), "final value NaN, not None: {:?}", done.final_value);

        let u = claim(s, &st, 10).unwrap();
        let f = Finish { selection: Some(selection((0, -1.0), (9, f64::INFINITY))), ..finish(TrialState::Complete) };
        s.finish_attempt(u.id, 1, &f).unwrap();
        assert_eq!(s.trial(u.id).unwrap().final_value, Some(f64::INFINITY));
    }

    pub fn requeue_abandoned_is_compare_and_set(s: &dyn Storage) {
        let st = study(s, "s");
        let t = claim(s, &st, 10).unwrap();
        assert!(!s.requeue_abandoned(t.id, 1, "someone-else", None, "dead", 600.0).unwrap(), "wrong worker");
        assert!(!s.requeue_abandoned(t.id, 2, "w1", None, "dead", 600.0).unwrap(), "wrong attempt");
        assert_eq!(s.trial(t.id).unwrap(), t, "a failed compare changes nothing");
        // Judged by a heartbeat the worker has renewed since: the lease stands.
        let seen = t.lease.as_ref().unwrap().heartbeat_at;
        s.heartbeat(t.id, 1).unwrap();
        let renewed = s.trial(t.id).unwrap().lease.unwrap().heartbeat_at;
        if renewed != seen {
            assert!(!s.requeue_abandoned(t.id, 1, "w1", Some(seen), "expired?", 600.0).unwrap(), "renewed since");
        }
        assert!(!s.requeue_abandoned(t.id, 1, "w1", Some(renewed + 1.0), "expired?", 600.0).unwrap(), "not the one seen");
        assert_eq!(s.trial(t.id).unwrap().state, TrialState::Running);
        let t = s.trial(t.id).unwrap();

        assert!(s.requeue_abandoned(t.id, 1, "w1", Some(renewed), "worker w1 is gone", 600.0).unwrap(), "the heartbeat seen");
        let requeued = s.trial(t.id).unwrap();
        assert_eq!((requeued.state, requeued.attempt, requeued.lease.as_ref()), (TrialState::Waiting, 1, None));
        assert_eq!(requeued.message.as_deref(), Some("worker w1 is gone"));
        assert_eq!(requeued.failures, 0, "abandonment is not a failure");
        assert!(!s.requeue_abandoned(t.id, 1, "w1", None, "again", 601.0).unwrap(), "the second requeue does nothing");
        assert_eq!(s.trial(t.id).unwrap().message.as_deref(), Some("worker w1 is gone"));

        let attempts = s.attempts(t.id).unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].outcome, Some(TrialState::Waiting));
        assert_eq!(attempts[0].finished_at, Some(600.0));
        assert_eq!(attempts[0].message.as_deref(), Some("worker w1 is gone"));

        // The old worker, still alive after all, is locked out; the new one runs the trial.
        assert_all_writes_refused(s, t.id, 1, TrialState::Waiting, 1);
        let again = claim_as(s, &st, &lease("w2", 700.0), 10).unwrap();
        assert_eq!((again.id, again.attempt), (t.id, 2));
        assert!(!s.requeue_abandoned(t.id, 1, "w1", None, "stale view", 701.0).unwrap());
        assert!(!s.requeue_abandoned(t.id, 2, "w1", None, "wrong worker", 701.0).unwrap());
        assert_eq!(s.trial(t.id).unwrap().state, TrialState::Running);
    }

    /// A panic inside a claim's transaction (a sampler's, a policy's bug) leaves nothing behind:
    /// the next claim allocates the same sample index, and nothing stays locked.
    pub fn a_panic_inside_a_claim_commits_nothing(s: &dyn Storage) {
        let st = study(s, "panics");
        let policy = FixedBudget { trials: 5, max_train_steps: 10 };
        let panicking = |_: u64| -> Result<Params, String> { panic!("a sampler bug") };
        let l = lease("w1", 1.0);
        let request = ClaimRequest { lease: &l, policy: &policy, sample: &panicking };
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.claim_trial(st.id, &request)));
        assert!(unwound.is_err(), "the panic reached the caller");
        let t = claim(s, &st, 5).expect("the study claims on");
        assert_eq!((t.number, t.sample_index), (0, Some(0)));
        assert_eq!(s.study("panics").unwrap().unwrap().next_sample_index, 1);
        assert_eq!(s.trials(st.id).unwrap().len(), 1);
    }

    pub fn a_sampler_error_creates_nothing(s: &dyn Storage) {
        let st = study(s, "s");
        assert_eq!(claim(s, &st, 10).unwrap().sample_index, Some(0));
        let l = lease("w1", 1.0);
        let failing = |i: u64| -> Result<Params, String> { Err(format!("no point at index {i}")) };
        let policy = FixedBudget { trials: 10, max_train_steps: 1000 };
        let request = ClaimRequest { lease: &l, policy: &policy, sample: &failing };
        match s.claim_trial(st.id, &request) {
            Err(StoreError::Sample(message)) => assert_eq!(message, "no point at index 1"),
            other => panic!("expected a sampler error, got {other:?}"),
        }
        assert_eq!(s.trials(st.id).unwrap().len(), 1, "no trial was created");
        assert_eq!(s.study("s").unwrap().unwrap().next_sample_index, 1, "the index was not consumed");
        let t = claim(s, &st, 10).unwrap();
        assert_eq!((t.number, t.sample_index, t.params), (1, Some(1), params_for(1)));
    }

    pub fn attempts_are_recorded(s: &dyn Storage) {
        let st = study(s, "s");
        let l1 = lease("w1", 100.0);
        let t = claim_as(s, &st, &l1, 10).unwrap();
        let open = s.attempts(t.id).unwrap();
        assert_eq!(open.len(), 1);
        let a = &open[0];
        assert_eq!((a.trial, a.attempt, a.worker.as_str(), a.host.as_str(), a.pid), (t.id, 1, "w1", "host-of-w1", 4242));
        assert_eq!(Some(a.started_at), t.started_at, "the attempt starts at the claim's (database) time");
        assert_eq!((a.finished_at, a.outcome, a.message.as_deref(), a.exit_code), (None, None, None, None));

        let failed = Finish {
            state: TrialState::Waiting,
            message: Some("exit status 1".into()),
            selection: None,
            counts_as_failure: true,
            exit_code: Some(1),
            at: 150.0,
            steps_run: 0,
            budget_independent_until: None,
        };
        s.finish_attempt(t.id, 1, &failed).unwrap();
        let after = s.trial(t.id).unwrap();
        assert_eq!((after.state, after.failures, after.finished_at), (TrialState::Waiting, 1, None));

        let l2 = Lease { worker: "w2".into(), host: "other".into(), pid: 7, heartbeat_at: 200.0, timeout: None };
        let before = s.now().unwrap();
        claim_as(s, &st, &l2, 10).unwrap();
        let after = s.now().unwrap();
        s.finish_attempt(t.id, 2, &Finish { exit_code: Some(0), at: 260.0, ..finish(TrialState::Complete) }).unwrap();

        let history = s.attempts(t.id).unwrap();
        assert_eq!(history.len(), 2);
        let (first, second) = (&history[0], &history[1]);
        assert_eq!((first.attempt, first.worker.as_str(), first.finished_at), (1, "w1", Some(150.0)));
        assert!(first.started_at <= before, "claimed before the second attempt");
        assert_eq!(
            (first.outcome, first.message.as_deref(), first.exit_code),
            (Some(TrialState::Waiting), Some("exit status 1"), Some(1))
        );
        assert_eq!((second.attempt, second.worker.as_str(), second.host.as_str(), second.pid), (2, "w2", "other", 7));
        assert!(before <= second.started_at && second.started_at <= after, "the claim's time is the database's");
        assert_eq!((second.finished_at, second.outcome), (Some(260.0), Some(TrialState::Complete)));
        assert_eq!(second.exit_code, Some(0));
        let done = s.trial(t.id).unwrap();
        assert_eq!((done.attempt, done.failures, done.finished_at), (2, 1, Some(260.0)));
    }

    pub fn a_later_finish_clears_an_earlier_selection(s: &dyn Storage) {
        let st = study(s, "s");
        let t = claim(s, &st, 10).unwrap();
        let with = Finish { selection: Some(selection((1, 0.5), (2, 0.6))), ..finish(TrialState::Waiting) };
        s.finish_attempt(t.id, 1, &with).unwrap();
        assert_eq!(s.trial(t.id).unwrap().best_value, Some(0.5));
        claim(s, &st, 10).unwrap();
        s.finish_attempt(t.id, 2, &Finish { message: Some("no objective".into()), ..finish(TrialState::Failed) }).unwrap();
        let done = s.trial(t.id).unwrap();
        assert_eq!((done.best_step, done.best_value, done.final_step, done.final_value), (None, None, None, None));
        assert_eq!(done.message.as_deref(), Some("no objective"));
    }

    pub fn checkpoints_and_warnings_are_kept(s: &dyn Storage) {
        let st = study(s, "s");
        let t = claim(s, &st, 10).unwrap();
        s.record_checkpoint(t.id, 1, 200, "/c/200").unwrap();
        s.record_checkpoint(t.id, 1, 100, "/c/100").unwrap();
        s.append_warnings(t.id, 1, &["first".into(), "second".into()]).unwrap();
        s.append_warnings(t.id, 1, &[]).unwrap();
        s.mark_checkpoint_deleted(t.id, 100).unwrap();
        s.finish_attempt(t.id, 1, &finish(TrialState::Waiting)).unwrap();

        claim(s, &st, 10).unwrap();
        s.append_warnings(t.id, 2, &["third".into()]).unwrap();
        s.record_checkpoint(t.id, 2, 300, "/c2/300").unwrap();
        s.finish_attempt(t.id, 2, &finish(TrialState::Complete)).unwrap();
        s.mark_checkpoint_deleted(t.id, 200).unwrap(); // allowed on a finished trial
        s.mark_checkpoint_deleted(t.id, 12345).unwrap(); // an unknown step is not an error

        let ckpts: Vec<_> =
            s.checkpoints(t.id).unwrap().into_iter().map(|c| (c.trial, c.attempt, c.step, c.path, c.deleted)).collect();
        assert_eq!(
            ckpts,
            [
                (t.id, 1, 100, "/c/100".to_string(), true),
                (t.id, 1, 200, "/c/200".to_string(), true),
                (t.id, 2, 300, "/c2/300".to_string(), false),
            ]
        );
        let warnings: Vec<_> = s.warnings(t.id).unwrap().into_iter().map(|w| (w.trial, w.attempt, w.message)).collect();
        assert_eq!(warnings, [(t.id, 1, "first".into()), (t.id, 1, "second".into()), (t.id, 2, "third".into())]);
    }

    pub fn requeued_trials_wait_again_with_their_history(s: &dyn Storage) {
        let st = study(s, "s");
        let failing = |message: &str| Finish {
            state: TrialState::Failed,
            message: Some(message.into()),
            selection: Some(selection((10, 1.0), (20, 2.0))),
            counts_as_failure: true,
            exit_code: Some(3),
            at: 300.0,
            steps_run: 0,
            budget_independent_until: None,
        };
        // Trial 0: failed on its retry (attempt 2, 2 failures), with a warning, a checkpoint and metrics.
        let t0 = claim(s, &st, 4).unwrap();
        s.append_warnings(t0.id, 1, &["bad line".into()]).unwrap();
        s.finish_attempt(t0.id, 1, &Finish { state: TrialState::Waiting, ..failing("exit 3") }).unwrap();
        assert_eq!(claim(s, &st, 4).unwrap().id, t0.id);
        s.append_metrics(t0.id, 2, &[point(10, "loss", 1.0), point(20, "loss", 2.0)]).unwrap();
        s.record_checkpoint(t0.id, 2, 10, "ckpt-10").unwrap();
        s.finish_attempt(t0.id, 2, &failing("exit 3 again")).unwrap();
        // Trial 1 complete, trial 2 running, trial 3 failed, trial 4 an imported failed run.
        let t1 = claim(s, &st, 4).unwrap();
        s.finish_attempt(t1.id, 1, &finish(TrialState::Complete)).unwrap();
        let t2 = claim(s, &st, 4).unwrap();
        let t3 = claim(s, &st, 4).unwrap();
        s.finish_attempt(t3.id, 1, &failing("exit 1")).unwrap();
        let t4 = s.import_trials(st.id, &[imported(1, TrialState::Failed, vec![])]).unwrap().remove(0);
        let before = snapshot(s, &st);

        // Refusals change nothing: a running trial (even beside a good one), an imported one, a missing one.
        let refused = s.requeue_trials(st.id, &Requeue { numbers: &[1, 2], states: &[TrialState::Failed], message: "m" });
        match refused {
            Err(StoreError::NotRequeueable { number: 2, state: TrialState::Running, why }) => {
                assert!(why.contains("running") && why.contains("w1"), "{why}")
            }
            other => panic!("expected NotRequeueable for the running trial, got {other:?}"),
        }
        let refused = s.requeue_trials(st.id, &Requeue { numbers: &[4], states: &[], message: "m" });
        assert!(matches!(refused, Err(StoreError::NotRequeueable { number: 4, state: TrialState::Failed, .. })), "{refused:?}");
        let refused = s.requeue_trials(st.id, &Requeue { numbers: &[0, 99], states: &[], message: "m" });
        assert!(matches!(refused, Err(StoreError::NoTrialNumber { number: 99, .. })), "{refused:?}");
        assert!(matches!(
            s.requeue_trials(st.id + 1000, &Requeue { numbers: &[], states: &[], message: "m" }),
            Err(StoreError::NoStudy(_))
        ));
        assert_eq!(snapshot(s, &st), before, "a refused requeue is all or nothing");

        // Every failed trial, except the imported one.
        let requeued = s
            .requeue_trials(st.id, &Requeue { numbers: &[], states: &[TrialState::Failed], message: "requeued by the user" })
            .unwrap();
        assert_eq!(requeued.iter().map(|t| t.number).collect::<Vec<_>>(), [0, 3]);
        let r0 = s.trial(t0.id).unwrap();
        assert_eq!(requeued[0], r0);
        assert_eq!(
            (r0.state, r0.attempt, r0.failures),
            (TrialState::Waiting, 2, 0),
            "the attempt count stays, the failures reset"
        );
        assert_eq!(
            (r0.message.as_deref(), r0.finished_at, r0.sample_index, &r0.params),
            (Some("requeued by the user"), None, t0.sample_index, &t0.params)
        );
        assert_eq!(s.attempts(t0.id).unwrap().len(), 2, "attempt records are kept");
        assert_eq!(s.warnings(t0.id).unwrap().len(), 1);
        assert_eq!(s.checkpoints(t0.id).unwrap().len(), 1);
        assert_eq!(s.metrics(t0.id).unwrap().len(), 2, "the last attempt's metrics stay until the next attempt starts");
        assert_eq!(s.trial(t4.id).unwrap(), t4, "imported trials matched by state are left alone");
        assert_eq!(s.trial(t1.id).unwrap().state, TrialState::Complete);

        // The next claim runs it as attempt 3, fresh; retries count from zero again.
        let again = claim(s, &st, 4).unwrap();
        assert_eq!((again.id, again.attempt, again.failures, again.state), (t0.id, 3, 0, TrialState::Running));
        assert_eq!(s.attempts(t0.id).unwrap().iter().map(|a| a.attempt).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(s.metrics(t0.id).unwrap().is_empty());
        assert_eq!(s.warnings(t0.id).unwrap()[0].attempt, 1, "warnings keep the attempt they came from");

        // A complete trial can be chosen by number; a waiting one stays waiting.
        let chosen = s.requeue_trials(st.id, &Requeue { numbers: &[1, 3], states: &[], message: "again" }).unwrap();
        assert_eq!(
            chosen.iter().map(|t| (t.number, t.state)).collect::<Vec<_>>(),
            [(1, TrialState::Waiting), (3, TrialState::Waiting)]
        );
        s.finish_attempt(t2.id, 1, &finish(TrialState::Complete)).unwrap();
    }

    pub fn imported_trials_are_stored_finished_with_their_metrics(s: &dyn Storage) {
        let st = study(s, "s");
        let a = claim(s, &st, 10).unwrap();
        s.finish_attempt(a.id, 1, &finish(TrialState::Complete)).unwrap();
        claim(s, &st, 10).unwrap();
        assert!(s.import_trials(st.id, &[]).unwrap().is_empty(), "an empty import stores nothing");

        let runs = vec![
            imported(1, TrialState::Complete, vec![point(300, "loss", 2.0), point(100, "loss", 1.0), point(100, "acc", 0.5)]),
            imported(2, TrialState::Diverged, vec![point(100, "loss", 2.0), point(300, "loss", f64::NAN)]),
            imported(3, TrialState::Failed, vec![]),
        ];
        let stored = s.import_trials(st.id, &runs).unwrap();
        assert_eq!(stored.len(), 3);
        for ((t, run), number) in stored.iter().zip(&runs).zip(2..) {
            assert_eq!((t.number, t.sample_index, t.attempt), (number, None, 1), "numbers continue after the study's trials");
            assert_eq!((t.state, &t.params, t.max_train_steps), (run.state, &run.params, 300));
            let sel = run.selection.unwrap();
            assert_eq!((t.best_step, t.best_value), (Some(sel.best_step), Some(sel.best_value)));
            assert_eq!((t.final_step, t.final_value), (Some(sel.final_step), Some(sel.final_value)));
            assert_eq!(t.message, run.message);
            assert_eq!((t.created_at, t.started_at, t.finished_at, t.lease.as_ref()), (run.at, None, Some(run.at), None));
            assert_eq!(t.failures, u32::from(run.state == TrialState::Failed));
            assert_eq!(s.trial(t.id).unwrap(), *t, "the import returns the stored records");
            assert!(s.attempts(t.id).unwrap().is_empty(), "no attempt was launched");
        }
        assert_eq!(s.metrics(stored[0].id).unwrap(), [point(100, "acc", 0.5), point(100, "loss", 1.0), point(300, "loss", 2.0)]);
        let diverged = s.metrics(stored[1].id).unwrap();
        assert_eq!((diverged[1].step, diverged[1].value.is_nan()), (300, true));
        assert!(s.metrics(stored[2].id).unwrap().is_empty());
        assert_eq!(s.study_metric(st.id, "acc").unwrap(), [(stored[0].id, 100, 0.5)]);

        let numbers: Vec<u64> = s.trials(st.id).unwrap().iter().map(|t| t.number).collect();
        assert_eq!(numbers, [0, 1, 2, 3, 4]);
        let in_state = |state| s.trials_in_state(st.id, state).unwrap().iter().map(|t| t.number).collect::<Vec<_>>();
        assert_eq!(in_state(TrialState::Complete), [0, 2]);
        assert_eq!(in_state(TrialState::Diverged), [3]);
        assert_eq!(in_state(TrialState::Failed), [4]);
        assert_eq!(in_state(TrialState::Running), [1]);

        let more = s.import_trials(st.id, &[imported(4, TrialState::Complete, vec![])]).unwrap();
        assert_eq!(more[0].number, 5, "a second import continues the numbers");
        let other = study(s, "other");
        let elsewhere = s.import_trials(other.id, &[imported(1, TrialState::Complete, vec![])]).unwrap();
        assert_eq!(elsewhere[0].number, 0, "the same origin may be imported into another study");
        assert!(matches!(s.import_trials(other.id + 1000, &runs), Err(StoreError::NoStudy(_))));
    }

    pub fn a_failed_import_leaves_the_study_unchanged(s: &dyn Storage) {
        let st = study(s, "s");
        let t = claim(s, &st, 10).unwrap();
        s.append_metrics(t.id, 1, &[point(10, "loss", 1.0)]).unwrap();
        s.import_trials(st.id, &[imported(1, TrialState::Complete, vec![point(100, "loss", 1.0)])]).unwrap();
        let before = snapshot(s, &st);

        let metrics = || vec![point(100, "loss", 3.0), point(200, "loss", 2.5)];
        // An unfinished state, after a good run: refused with the run's origin.
        for state in [TrialState::Running, TrialState::Waiting] {
            let runs = [imported(2, TrialState::Complete, metrics()), imported(3, state, metrics())];
            match s.import_trials(st.id, &runs) {
                Err(StoreError::NotImportable { origin, state: found }) => {
                    assert_eq!((origin.as_str(), found), ("/data/runs.jsonl:3", state));
                }
                other => panic!("expected NotImportable, got {other:?}"),
            }
            assert_eq!(snapshot(s, &st), before, "the good run before it was rolled back");
        }
        // The same run twice in one import (a copied line): the second is refused, naming the first.
        let copy = ImportedTrial { origin: "/data/runs.jsonl:9".into(), ..imported(2, TrialState::Complete, metrics()) };
        let runs = [imported(2, TrialState::Complete, metrics()), imported(3, TrialState::Complete, metrics()), copy];
        match s.import_trials(st.id, &runs) {
            Err(StoreError::DuplicateRun { origin, earlier }) => {
                assert_eq!((origin.as_str(), earlier.as_str()), ("/data/runs.jsonl:9", "/data/runs.jsonl:2"));
            }
            other => panic!("expected DuplicateRun, got {other:?}"),
        }
        assert_eq!(snapshot(s, &st), before);
        // A run stored by an earlier import, now read from elsewhere (an edited or renamed file):
        // refused, naming the trial that holds it and where it came from.
        let moved = ImportedTrial { origin: "/data/renamed.jsonl:7".into(), ..imported(1, TrialState::Complete, metrics()) };
        let runs = [imported(2, TrialState::Complete, metrics()), moved];
        match s.import_trials(st.id, &runs) {
            Err(e @ StoreError::AlreadyImported { .. }) => {
                assert!(matches!(&e, StoreError::AlreadyImported { number: 1, study, .. } if *study == st.id), "{e:?}");
                let text = e.to_string();
                assert!(
                    text.contains("/data/renamed.jsonl:7") && text.contains("/data/runs.jsonl:1") && text.contains("trial 1"),
                    "{text}"
                );
            }
            other => panic!("expected AlreadyImported, got {other:?}"),
        }
        assert_eq!(snapshot(s, &st), before);
        // A different run read from a line that once held another is a new run.
        let other_run = ImportedTrial { run_key: "run-1-edited".into(), ..imported(1, TrialState::Complete, metrics()) };
        let edited = s.import_trials(st.id, &[other_run]).unwrap();
        assert_eq!(edited[0].number, 2);
        let after_edit = snapshot(s, &st);

        assert_ne!(after_edit, before);

        // Nothing was consumed: the next import and claim get the numbers they would have.
        let ok = s.import_trials(st.id, &[imported(2, TrialState::Complete, metrics())]).unwrap();
        assert_eq!(ok[0].number, 3);
        assert_eq!(s.metrics(ok[0].id).unwrap(), metrics());
        let next = claim(s, &st, 10).unwrap();
        assert_eq!((next.number, next.sample_index), (4, Some(1)));
        let origins: Vec<(TrialId, String, Option<String>)> =
            s.imports(st.id).unwrap().into_iter().map(|i| (i.trial, i.origin, i.source)).collect();
        let source = Some("a colleague's sweep".to_string());
        let trials = s.trials(st.id).unwrap();
        assert_eq!(
            origins,
            [
                (trials[1].id, "/data/runs.jsonl:1".to_string(), source.clone()),
                (trials[2].id, "/data/runs.jsonl:1".to_string(), source.clone()),
                (trials[3].id, "/data/runs.jsonl:2".to_string(), source),
            ],
            "every import keeps its origin and source, by trial number"
        );
    }

    pub fn a_study_created_with_its_imports_is_all_or_nothing(s: &dyn Storage) {
        let new =
            |name: &str| NewStudy { name: name.into(), spec_json: "{}".into(), identity_json: r#"{"imported":true}"#.into() };
        let runs = [imported(1, TrialState::Complete, vec![point(100, "loss", 1.0)]), imported(2, TrialState::Diverged, vec![])];
        let (st, stored) = s.create_study_with_imports(&new("fresh"), &runs).unwrap();
        assert_eq!((st.name.as_str(), stored.len()), ("fresh", 2));
        assert_eq!(s.study("fresh").unwrap().unwrap(), st);
        assert_eq!(s.trials(st.id).unwrap(), stored);

        // A failed import creates no study.
        let bad = [imported(1, TrialState::Complete, vec![]), imported(2, TrialState::Running, vec![])];
        assert!(matches!(s.create_study_with_imports(&new("broken"), &bad), Err(StoreError::NotImportable { .. })));
        assert_eq!(s.study("broken").unwrap(), None, "no empty study is left behind");

        // A taken name is refused, and the existing study is untouched (not its spec either).
        let existing = study(s, "taken");
        let before = snapshot(s, &existing);
        match s.create_study_with_imports(&new("taken"), &runs) {
            Err(StoreError::StudyExists { name }) => assert_eq!(name, "taken"),
            other => panic!("expected StudyExists, got {other:?}"),
        }
        assert_eq!(snapshot(s, &existing), before);
    }

    pub fn imported_trials_are_never_writable(s: &dyn Storage) {
        let st = study(s, "s");
        let runs = [
            imported(1, TrialState::Complete, vec![point(100, "loss", 1.0)]),
            imported(2, TrialState::Diverged, vec![]),
            imported(3, TrialState::Failed, vec![]),
        ];
        for t in s.import_trials(st.id, &runs).unwrap() {
            for attempt in [0, 1, 2] {
                assert_all_writes_refused(s, t.id, attempt, t.state, 1);
            }
            assert!(!s.requeue_abandoned(t.id, 1, "w1", None, "gone", 1.0).unwrap(), "an imported trial is not requeued");
            assert_eq!(s.trial(t.id).unwrap(), t, "unchanged");
            assert!(s.warnings(t.id).unwrap().is_empty() && s.checkpoints(t.id).unwrap().is_empty());
        }
        assert_eq!(s.metrics(s.trials(st.id).unwrap()[0].id).unwrap(), [point(100, "loss", 1.0)]);
    }

    pub fn claims_after_an_import_start_the_sample_sequence(s: &dyn Storage) {
        let st = study(s, "s");
        let runs: Vec<_> = (1..=3).map(|line| imported(line, TrialState::Complete, vec![])).collect();
        s.import_trials(st.id, &runs).unwrap();
        assert_eq!(s.study("s").unwrap().unwrap().next_sample_index, 0, "imports allocate no sample index");

        // Imported trials do not count against max_trials: the sampler's sequence is unchanged.
        let a = claim(s, &st, 2).expect("imported trials leave the sampler's quota alone");
        assert_eq!((a.number, a.sample_index, a.params.clone()), (3, Some(0), params_for(0)));
        let b = claim(s, &st, 2).unwrap();
        assert_eq!((b.number, b.sample_index), (4, Some(1)));
        assert_eq!(claim(s, &st, 2), None, "full after max_trials sampled trials");

        // Imports between claims keep numbers and indices without gaps or reuse.
        s.finish_attempt(a.id, 1, &finish(TrialState::Complete)).unwrap();
        let more = s.import_trials(st.id, &[imported(4, TrialState::Complete, vec![])]).unwrap();
        assert_eq!(more[0].number, 5);
        let c = claim(s, &st, 3).unwrap();
        assert_eq!((c.number, c.sample_index), (6, Some(2)));
        assert_eq!(s.study("s").unwrap().unwrap().next_sample_index, 3);
    }

    pub fn ladder_promotions_resume_and_keep_every_rung(s: &dyn Storage) {
        let st = study(s, "ladder");
        // Rungs 100 and 300; a decay of 20 steps: rung 0 shares steps up to 80.
        let policy = ladder_policy(3, &[100, 300], Some(20));
        let mut claimed = Vec::new();
        for (i, value) in [0.5, 0.2, 0.7].into_iter().enumerate() {
            let c = claim_with(s, &st, &policy, &lease("w1", 100.0 + i as f64)).expect("a launch");
            assert_eq!((c.trial.rung, c.trial.max_train_steps, c.rung.entry), (0, 100, RungEntry::Started));
            assert_eq!(policy.checkpoint_steps(&c.trial), [80], "the resume point is asked for in advance");
            let t = &c.trial;
            s.append_metrics(
                t.id,
                1,
                &[point(40, "loss", value + 0.3), point(80, "loss", value + 0.1), point(100, "loss", value)],
            )
            .unwrap();
            s.record_checkpoint(t.id, 1, 80, "ckpt-80").unwrap();
            s.record_checkpoint(t.id, 1, 100, "ckpt-100").unwrap();
            let done =
                Finish { selection: Some(selection((100, value), (100, value))), steps_run: 100, ..finish(TrialState::Complete) };
            s.finish_attempt(t.id, 1, &done).unwrap();
            claimed.push(c.trial);
        }
        // Three finished at rung 0: the best (trial 1) goes on, resuming from step 80.
        let c = claim_with(s, &st, &policy, &lease("w1", 200.0)).expect("a promotion");
        assert_eq!(c.trial.id, claimed[1].id);
        assert_eq!((c.trial.rung, c.trial.max_train_steps, c.trial.attempt, c.trial.state), (1, 300, 2, TrialState::Running));
        assert_eq!(c.rung.entry, RungEntry::Resumed { from: 0, step: 80 });
        assert_eq!(c.resume_from.as_deref(), Some("ckpt-80"));
        assert!(c.trial.best_value.is_none(), "the new rung starts without a selection");
        let id = c.trial.id;
        // The new rung holds the shared prefix; rung 0 keeps everything.
        assert_eq!(s.metrics(id).unwrap(), [point(40, "loss", 0.5), point(80, "loss", 0.30000000000000004)]);
        assert_eq!(s.rung_metrics(id, 0).unwrap().len(), 3);
        // Nothing else can be promoted (quota 1 of 3) or launched: wait for the running rung.
        assert!(matches!(s.claim_trial(st.id, &request(&policy, &lease("w2", 201.0))).unwrap(), Claim::Wait));
        // The attempt fails once (retries allowed): the retry resumes from the same checkpoint and
        // what the failed attempt recorded after the prefix is gone.
        s.append_metrics(id, 2, &[point(200, "loss", 9.0)]).unwrap();
        s.finish_attempt(id, 2, &Finish { steps_run: 120, ..finish(TrialState::Waiting) }).unwrap();
        let retry = claim_with(s, &st, &policy, &lease("w2", 300.0)).expect("the retry");
        assert_eq!((retry.trial.id, retry.trial.rung, retry.trial.attempt), (id, 1, 3));
        assert_eq!(retry.resume_from.as_deref(), Some("ckpt-80"));
        assert_eq!(s.metrics(id).unwrap().iter().map(|p| p.step).collect::<Vec<_>>(), [40, 80]);
        s.append_metrics(id, 3, &[point(300, "loss", 0.1)]).unwrap();
        let done = Finish {
            selection: Some(selection((300, 0.1), (300, 0.1))),
            steps_run: 220,
            budget_independent_until: Some(280),
            ..finish(TrialState::Complete)
        };
        s.finish_attempt(id, 3, &done).unwrap();
        // The top rung never promotes: the ladder is done.
        assert!(matches!(s.claim_trial(st.id, &request(&policy, &lease("w2", 400.0))).unwrap(), Claim::Done));
        let rungs = s.rungs(st.id).unwrap();
        let summary: Vec<(u64, u32, u64, TrialState, Option<f64>, u64)> =
            rungs.iter().map(|r| (r.number, r.rung, r.budget, r.state, r.best_value, r.steps_run)).collect();
        assert_eq!(
            summary,
            [
                (0, 0, 100, TrialState::Complete, Some(0.5), 100),
                (1, 0, 100, TrialState::Complete, Some(0.2), 100),
                (1, 1, 300, TrialState::Complete, Some(0.1), 340),
                (2, 0, 100, TrialState::Complete, Some(0.7), 100),
            ]
        );
        assert_eq!(rungs[2].budget_independent_until, Some(280));
        let trial = s.trial(id).unwrap();
        assert_eq!((trial.rung, trial.max_train_steps, trial.best_value), (1, 300, Some(0.1)));
        assert_eq!(s.attempts(id).unwrap().iter().map(|a| a.rung).collect::<Vec<_>>(), [0, 1, 1]);
        // The study's curve of a promoted trial is its current rung's.
        let curve: Vec<(u64, f64)> =
            s.study_metric(st.id, "loss").unwrap().into_iter().filter(|(t, ..)| *t == id).map(|(_, st, v)| (st, v)).collect();
        assert_eq!(curve.iter().map(|c| c.0).collect::<Vec<_>>(), [40, 80, 300]);
        // The one-transaction snapshot is what the separate reads give on a quiet study.
        let (record, trials, rungs) = s.snapshot(st.id).unwrap();
        assert_eq!(Some(record), s.study(&st.name).unwrap());
        assert_eq!(trials, s.trials(st.id).unwrap());
        assert_eq!(rungs, s.rungs(st.id).unwrap());
    }

    pub fn a_promotion_without_a_checkpoint_restarts(s: &dyn Storage) {
        let st = study(s, "restart");
        let policy = ladder_policy(3, &[100, 300], None);
        for value in [0.5, 0.2, 0.7] {
            let c = claim_with(s, &st, &policy, &lease("w1", 1.0)).unwrap();
            assert!(policy.checkpoint_steps(&c.trial).is_empty(), "horizon does not know this schedule");
            s.append_metrics(c.trial.id, 1, &[point(100, "loss", value)]).unwrap();
            s.record_checkpoint(c.trial.id, 1, 100, "ckpt-100").unwrap();
            s.finish_attempt(
                c.trial.id,
                1,
                &Finish { selection: Some(selection((100, value), (100, value))), ..finish(TrialState::Complete) },
            )
            .unwrap();
        }
        let c = claim_with(s, &st, &policy, &lease("w1", 2.0)).unwrap();
        assert_eq!((c.trial.number, c.rung.entry, c.resume_from), (1, RungEntry::Restarted { from: 0 }, None));
        assert!(s.metrics(c.trial.id).unwrap().is_empty(), "from scratch: nothing copied");
        assert_eq!(s.rung_metrics(c.trial.id, 0).unwrap(), [point(100, "loss", 0.2)]);
    }
}

/// Workers with their own connections claim until the study is full; every trial is claimed
/// exactly once and numbers and sample indices are `0..max_trials` without gaps.
fn concurrent_claims(open: &(dyn Fn() -> Arc<dyn Storage> + Sync), workers: usize, max_trials: u64) {
    let start = Barrier::new(workers);
    let claimed: Vec<Vec<TrialRecord>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let start = &start;
                scope.spawn(move || {
                    let s = open();
                    let st = study(&*s, "race");
                    start.wait();
                    let mut mine = Vec::new();
                    let mut clock = 0.0;
                    loop {
                        clock += 1.0;
                        let l = lease(&format!("worker-{w}"), clock);
                        let Some(t) = claim_as(&*s, &st, &l, max_trials) else { break };
                        s.append_metrics(t.id, t.attempt, &[point(1, "loss", t.number as f64)]).unwrap();
                        s.finish_attempt(t.id, t.attempt, &finish(TrialState::Complete)).unwrap();
                        mine.push(t);
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a worker panicked")).collect()
    });

    eprintln!("claims per worker: {:?}", claimed.iter().map(Vec::len).collect::<Vec<_>>());
    let all: Vec<&TrialRecord> = claimed.iter().flatten().collect();
    assert_eq!(all.len() as u64, max_trials, "claims per worker: {:?}", claimed.iter().map(Vec::len).collect::<Vec<_>>());
    let ids: BTreeSet<TrialId> = all.iter().map(|t| t.id).collect();
    assert_eq!(ids.len(), all.len(), "a trial was claimed twice");
    let numbers: Vec<u64> = all.iter().map(|t| t.number).collect::<BTreeSet<_>>().into_iter().collect();
    assert_eq!(numbers, (0..max_trials).collect::<Vec<_>>());
    let indices: Vec<u64> = all.iter().filter_map(|t| t.sample_index).collect::<BTreeSet<_>>().into_iter().collect();
    assert_eq!(indices, (0..max_trials).collect::<Vec<_>>());
    assert!(all.iter().all(|t| t.attempt == 1 && t.params == params_for(t.sample_index.unwrap())));

    let s = open();
    let st = s.study("race").unwrap().expect("one study");
    assert_eq!(s.studies().unwrap().len(), 1, "the study was created once");
    assert_eq!(st.next_sample_index, max_trials);
    let stored = s.trials(st.id).unwrap();
    assert_eq!(stored.len() as u64, max_trials);
    for t in &stored {
        assert_eq!((t.state, t.attempt), (TrialState::Complete, 1), "trial {}", t.number);
        assert_eq!(s.attempts(t.id).unwrap().len(), 1);
        assert_eq!(s.metrics(t.id).unwrap(), [point(1, "loss", t.number as f64)]);
    }
}

/// Races on separate connections, each many times over: a requeue of an abandoned attempt
/// against that attempt's finish; two workers promoting the same trial; a worker still writing
/// while another requeues its expired lease and claims the trial.
fn races(open: &(dyn Fn() -> Arc<dyn Storage> + Sync), rounds: usize) {
    let s = open();
    let st = study(&*s, "races");
    for round in 0..rounds {
        // Requeue against finish: exactly one of them takes effect.
        let t = claim_as(&*s, &st, &lease("w1", 1.0), u64::MAX).unwrap();
        let start = Barrier::new(2);
        let (requeued, finished) = std::thread::scope(|scope| {
            let a = scope.spawn(|| {
                let s = open();
                start.wait();
                s.requeue_abandoned(t.id, t.attempt, "w1", None, "gone", 2.0).unwrap()
            });
            let b = scope.spawn(|| {
                let s = open();
                start.wait();
                s.finish_attempt(t.id, t.attempt, &finish(TrialState::Complete))
            });
            (a.join().unwrap(), b.join().unwrap())
        });
        let after = s.trial(t.id).unwrap();
        match (requeued, &finished) {
            (true, Err(StoreError::NotWritable { .. })) => assert_eq!(after.state, TrialState::Waiting, "round {round}"),
            (false, Ok(())) => assert_eq!(after.state, TrialState::Complete, "round {round}"),
            other => panic!("round {round}: requeue and finish both took effect, or neither: {other:?}"),
        }
        if after.state == TrialState::Waiting {
            // Take it back and finish it, so the next round starts clean.
            let again = claim_as(&*s, &st, &lease("w1", 3.0), u64::MAX).unwrap();
            assert_eq!(again.id, t.id);
            s.finish_attempt(again.id, again.attempt, &finish(TrialState::Complete)).unwrap();
        }
    }

    // Two workers promote the same trial: one promotion, one rung-1 record.
    for round in 0..rounds {
        let name = format!("promote-{round}");
        let st = study(&*s, &name);
        // Three runs at rung 0: ASHA promotes the best third, one trial.
        let policy = ladder_policy(3, &[10, 30], None);
        let mut best = None;
        for (n, value) in [0.5, 0.3, 0.7].into_iter().enumerate() {
            let t = claim_with(&*s, &st, &policy, &lease("w0", 1.0)).unwrap().trial;
            assert_eq!(t.number, n as u64);
            s.append_metrics(t.id, t.attempt, &[point(10, "m", value)]).unwrap();
            let done = Finish { selection: Some(selection((10, value), (10, value))), ..finish(TrialState::Complete) };
            s.finish_attempt(t.id, t.attempt, &done).unwrap();
            if n == 1 {
                best = Some(t);
            }
        }
        let t = best.unwrap();
        let start = Barrier::new(2);
        let got: Vec<Option<ClaimedTrial>> = std::thread::scope(|scope| {
            let hs: Vec<_> = (0..2)
                .map(|w| {
                    let (start, policy, st) = (&start, &policy, &st);
                    scope.spawn(move || {
                        let s = open();
                        start.wait();
                        claim_with(&*s, st, policy, &lease(&format!("w{}", w + 1), 2.0))
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let promoted: Vec<&ClaimedTrial> = got.iter().flatten().collect();
        assert_eq!(promoted.len(), 1, "round {round}: exactly one worker got the promotion: {got:?}");
        assert_eq!((promoted[0].trial.id, promoted[0].rung.rung), (t.id, 1));
        let at_1: Vec<u64> = s.rungs(st.id).unwrap().iter().filter(|r| r.rung == 1).map(|r| r.number).collect();
        assert_eq!(at_1, [1], "round {round}: one promotion, of the best");
    }

    // A worker keeps writing while another requeues its lease and claims the trial: once the
    // claim has happened, every write of the old attempt is refused, and the new attempt's
    // metrics are the only ones at the rung.
    for round in 0..rounds {
        let t = claim_as(&*s, &st, &lease("slow", 1.0), u64::MAX).unwrap();
        let start = Barrier::new(2);
        let claimed = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                let s = open();
                start.wait();
                // Write until refused (or a bounded number of times: the writer must not starve
                // the taker of the lock), checking that no write lands once the new claim is
                // known to have happened.
                for step in 1..=500u64 {
                    let seen_claim = claimed.load(std::sync::atomic::Ordering::SeqCst);
                    match s.append_metrics(t.id, t.attempt, &[point(step, "old", 1.0)]) {
                        Ok(()) => assert!(!seen_claim, "round {round}: the old attempt wrote after the new claim"),
                        Err(StoreError::NotWritable { .. }) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            });
            let taker = scope.spawn(|| {
                let s = open();
                start.wait();
                assert!(s.requeue_abandoned(t.id, t.attempt, "slow", None, "lease expired", 2.0).unwrap());
                let again = claim_as(&*s, &st, &lease("fast", 3.0), u64::MAX).unwrap();
                claimed.store(true, std::sync::atomic::Ordering::SeqCst);
                assert_eq!((again.id, again.attempt), (t.id, t.attempt + 1));
                // While the new attempt runs, every write of the old one is refused.
                for kind in 0..3 {
                    let refused = match kind {
                        0 => s.append_metrics(t.id, t.attempt, &[point(1000, "old", 1.0)]).err(),
                        1 => s.heartbeat(t.id, t.attempt).err(),
                        _ => s.finish_attempt(t.id, t.attempt, &finish(TrialState::Complete)).err(),
                    };
                    assert!(matches!(refused, Some(StoreError::NotWritable { .. })), "round {round}: {refused:?}");
                }
                s.append_metrics(again.id, again.attempt, &[point(1, "new", 2.0)]).unwrap();
                s.finish_attempt(again.id, again.attempt, &finish(TrialState::Complete)).unwrap();
            });
            taker.join().unwrap();
            writer.join().unwrap();
        });
        let names: BTreeSet<String> = s.metrics(t.id).unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["new".to_string()].into(), "round {round}: the new attempt started fresh");
    }
}

// ---------------------------------------------------------------------------------------------
// Instantiation for SQLite

/// Generates one test per suite function for a backend, from an expression that yields a
/// `(guard, store)` pair: the guard (a temporary directory, say) lives as long as the test.
macro_rules! conformance {
    ($backend:ident, $make:expr, [$($check:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[test]
                fn $check() {
                    let (_guard, store) = $make;
                    super::suite::$check(&store);
                }
            )*
        }
    };
}

/// The suite against every backend: SQLite in memory and in a file, and PostgreSQL (a fresh
/// database per test on the server `scripts/test` starts).
macro_rules! every_backend {
    ($($check:ident),* $(,)?) => {
        conformance!(sqlite_in_memory, ((), horizon_store::SqliteStorage::open_in_memory().unwrap()), [$($check),*]);
        conformance!(sqlite_file, super::temp_file_store(), [$($check),*]);
        conformance!(postgres, super::pg_store(), [$($check),*]);
    };
}

every_backend!(
    studies_are_created_once_and_keep_their_identity,
    unknown_ids_are_errors,
    trials_can_be_listed_by_state,
    claims_number_trials_and_allocate_indices_without_gaps,
    max_trials_is_respected_per_study,
    waiting_trials_are_claimed_first_and_start_fresh,
    finishing_records_the_outcome_and_closes_the_trial,
    a_finished_trial_is_never_written_again,
    only_the_current_attempt_may_write,
    metrics_are_unique_per_step_and_name,
    non_finite_values_round_trip,
    requeue_abandoned_is_compare_and_set,
    a_sampler_error_creates_nothing,
    a_panic_inside_a_claim_commits_nothing,
    attempts_are_recorded,
    a_later_finish_clears_an_earlier_selection,
    checkpoints_and_warnings_are_kept,
    requeued_trials_wait_again_with_their_history,
    imported_trials_are_stored_finished_with_their_metrics,
    a_failed_import_leaves_the_study_unchanged,
    a_study_created_with_its_imports_is_all_or_nothing,
    imported_trials_are_never_writable,
    claims_after_an_import_start_the_sample_sequence,
    ladder_promotions_resume_and_keep_every_rung,
    a_promotion_without_a_checkpoint_restarts,
);

fn pg_store() -> (horizon_store::testing::ScratchDatabase, PostgresStorage) {
    let db = horizon_store::testing::scratch_database();
    let store = PostgresStorage::open(&db.url, Access::ReadWrite).unwrap();
    (db, store)
}

fn pg_opener(db: &horizon_store::testing::ScratchDatabase) -> impl Fn() -> Arc<dyn Storage> + Sync + '_ {
    move || Arc::new(PostgresStorage::open(&db.url, Access::ReadWrite).unwrap()) as Arc<dyn Storage>
}

#[test]
fn postgres_separate_connections_race_without_losing_or_doubling_anything() {
    let db = horizon_store::testing::scratch_database();
    races(&pg_opener(&db), 20);
}

#[test]
fn postgres_separate_connections_claim_concurrently() {
    // A fresh database: the workers also race to create the schema and the study.
    let db = horizon_store::testing::scratch_database();
    concurrent_claims(&pg_opener(&db), 8, 200);
}

#[test]
fn postgres_separate_connections_run_one_ladder() {
    let db = horizon_store::testing::scratch_database();
    concurrent_ladder(&pg_opener(&db), 4, 27);
}

#[test]
fn postgres_separate_connections_run_one_guarded_ladder() {
    let db = horizon_store::testing::scratch_database();
    concurrent_ladder(&pg_opener(&db), 3, 170);
}

fn temp_file_store() -> (tempfile::TempDir, SqliteStorage) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStorage::open(&dir.path().join("horizon.db")).unwrap();
    (dir, store)
}

#[test]
fn sqlite_separate_connections_race_without_losing_or_doubling_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("horizon.db");
    let open = || Arc::new(SqliteStorage::open(&path).unwrap()) as Arc<dyn Storage>;
    races(&open, 20);
}

#[test]
fn sqlite_separate_connections_claim_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    // A fresh file: the workers also race to create the schema and the study.
    let path = dir.path().join("shared").join("horizon.db");
    let open = || Arc::new(SqliteStorage::open(&path).unwrap()) as Arc<dyn Storage>;
    concurrent_claims(&open, 4, 200);
}

#[test]
fn sqlite_one_connection_shared_by_threads() {
    let store: Arc<dyn Storage> = Arc::new(SqliteStorage::open_in_memory().unwrap());
    let open = || Arc::clone(&store);
    concurrent_claims(&open, 4, 100);
}

// ---------------------------------------------------------------------------------------------
// SQLite specifics

#[test]
fn sqlite_open_creates_the_directory_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("study.db");
    let store = SqliteStorage::open(&path).unwrap();
    assert_eq!(store.path(), path.display().to_string());
    let st = study(&store, "s");
    let t = claim(&store, &st, 5).unwrap();
    store.append_metrics(t.id, 1, &[point(1, "loss", f64::NAN)]).unwrap();
    let st = store.study("s").unwrap().unwrap();
    let t = store.trial(t.id).unwrap();
    assert_eq!(st.next_sample_index, 1);
    drop(store);

    let reopened = SqliteStorage::open(&path).unwrap();
    assert_eq!(reopened.study("s").unwrap(), Some(st));
    assert_eq!(reopened.trial(t.id).unwrap(), t);
    assert!(reopened.metrics(t.id).unwrap()[0].value.is_nan());

    let raw = rusqlite::Connection::open(&path).unwrap();
    let mode: String = raw.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = raw.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert!(version >= 1);
}

#[test]
fn sqlite_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("horizon.db");
    drop(SqliteStorage::open(&path).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    let known: i64 = raw.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    raw.pragma_update(None, "user_version", known + 1).unwrap();
    drop(raw);
    match SqliteStorage::open(&path) {
        Err(StoreError::SchemaTooNew { path: p, found, known: k }) => {
            assert_eq!((p, found, k), (path.display().to_string(), known + 1, known));
        }
        Err(other) => panic!("expected SchemaTooNew, got {other}"),
        Ok(_) => panic!("expected SchemaTooNew, got a store"),
    }
}

#[test]
fn sqlite_errors_name_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-db");
    std::fs::write(&path, "this is not an SQLite database, just some text long enough to have a header").unwrap();
    match SqliteStorage::open(&path) {
        Err(e @ StoreError::Backend { .. }) => assert!(e.to_string().contains(&path.display().to_string()), "{e}"),
        Err(other) => panic!("expected an SQLite error, got {other}"),
        Ok(_) => panic!("a text file opened as a database"),
    }
}

#[test]
fn sqlite_read_only_opens_read_and_never_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("horizon.db");
    let store = SqliteStorage::open(&path).unwrap();
    let st = study(&store, "s");
    let t = claim(&store, &st, 5).unwrap();
    store.append_metrics(t.id, 1, &[point(10, "loss", 0.5)]).unwrap();
    let t = claim(&store, &st, 5).unwrap();
    store.finish_attempt(t.id, 1, &finish(TrialState::Failed)).unwrap();
    let t = store.trial(t.id).unwrap();
    let first = store.trials(st.id).unwrap()[0].id;
    drop(store);

    let ro = SqliteStorage::open_read_only(&path).unwrap();
    assert_eq!(ro.study("s").unwrap().unwrap().id, st.id);
    assert_eq!(ro.trial(t.id).unwrap(), t);
    assert_eq!(ro.metrics(first).unwrap(), [point(10, "loss", 0.5)]);
    // Every kind of write is refused by SQLite itself, and nothing changed.
    match ro.open_or_create_study(&NewStudy { name: "new".into(), spec_json: "{}".into(), identity_json: "{}".into() }) {
        Err(StoreError::Backend { kind, .. }) => assert_eq!(kind, horizon_store::BackendErrorKind::ReadOnly),
        other => panic!("a read-only store wrote: {other:?}"),
    }
    assert!(ro.append_metrics(first, 1, &[point(20, "loss", 0.4)]).is_err());
    assert!(ro.requeue_trials(st.id, &Requeue { numbers: &[], states: &[TrialState::Failed], message: "m" }).is_err());
    drop(ro);
    let rw = SqliteStorage::open(&path).unwrap();
    assert_eq!(rw.studies().unwrap().len(), 1);
    assert_eq!(rw.metrics(first).unwrap().len(), 1);
    assert_eq!(rw.trial(t.id).unwrap(), t, "still failed");

    // A missing file is an error, and is not created.
    let missing = dir.path().join("none").join("horizon.db");
    assert!(matches!(
        SqliteStorage::open_read_only(&missing),
        Err(StoreError::Backend { kind: horizon_store::BackendErrorKind::CannotOpen, .. })
    ));
    assert!(!missing.exists() && !missing.parent().unwrap().exists());
}

#[test]
fn sqlite_read_only_refuses_a_schema_it_would_have_to_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("horizon.db");
    drop(SqliteStorage::open(&path).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    let known: i64 = raw.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    raw.pragma_update(None, "user_version", known - 1).unwrap();
    drop(raw);
    match SqliteStorage::open_read_only(&path) {
        Err(e @ StoreError::SchemaTooOld { .. }) => {
            assert!(matches!(&e, StoreError::SchemaTooOld { found, known: k, .. } if *found == known - 1 && *k == known));
            assert!(e.to_string().contains("fix:"), "{e}");
        }
        Err(other) => panic!("expected SchemaTooOld, got {other}"),
        Ok(_) => panic!("expected SchemaTooOld, got a store"),
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = raw.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, known - 1, "a read-only open migrates nothing");
    raw.pragma_update(None, "user_version", known + 1).unwrap();
    drop(raw);
    assert!(matches!(SqliteStorage::open_read_only(&path), Err(StoreError::SchemaTooNew { .. })));
}

/// Workers on their own connections run a whole ladder (27 -> 9 -> 3 -> 1) through the claim
/// alone, each finishing what it claimed before asking again and asking again while told to
/// wait: every trial reaches each rung at most once, and the rung sizes are ASHA's.
fn concurrent_ladder(open: &(dyn Fn() -> Arc<dyn Storage> + Sync), workers: usize, trials: u64) {
    let start = Barrier::new(workers);
    let value = |number: u64, rung: u32| ((number * 7919) % 97) as f64 / 97.0 + 0.01 * rung as f64;
    let runs: Vec<Vec<(u64, u32)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let start = &start;
                scope.spawn(move || {
                    let s = open();
                    let st = study(&*s, "ladder-race");
                    let policy = ladder_policy(trials, &[1, 3, 9, 27], Some(0));
                    start.wait();
                    let mut mine = Vec::new();
                    let mut waits = 0u64;
                    loop {
                        let l = lease(&format!("worker-{w}"), 1.0);
                        match s.claim_trial(st.id, &request(&policy, &l)).unwrap() {
                            Claim::Run(c) => {
                                let (t, budget) = (&c.trial, c.trial.max_train_steps);
                                let v = value(t.number, t.rung);
                                s.append_metrics(t.id, t.attempt, &[point(budget, "loss", v)]).unwrap();
                                s.record_checkpoint(t.id, t.attempt, budget, &format!("ckpt-{budget}")).unwrap();
                                let sel = selection((budget, v), (budget, v));
                                s.finish_attempt(
                                    t.id,
                                    t.attempt,
                                    &Finish { selection: Some(sel), ..finish(TrialState::Complete) },
                                )
                                .unwrap();
                                mine.push((t.number, t.rung));
                            }
                            Claim::Wait => {
                                waits += 1;
                                assert!(waits < 100_000, "waited forever");
                                // Poll as a worker does (WAIT_POLL), not in a tight loop: SQLite
                                // hands its lock out unfairly, and claimers spinning on it can
                                // starve the worker whose finish they wait for (BENCHMARKS.md).
                                std::thread::sleep(std::time::Duration::from_millis(1));
                            }
                            Claim::Done => break,
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a worker panicked")).collect()
    });
    let all: Vec<(u64, u32)> = runs.into_iter().flatten().collect();
    let distinct: BTreeSet<(u64, u32)> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a trial ran a rung twice");
    let s = open();
    let st = s.study("ladder-race").unwrap().unwrap();
    let rungs = s.rungs(st.id).unwrap();
    assert_eq!(rungs.len(), all.len(), "every run the workers made is a rung record");
    assert_eq!(all.iter().filter(|(_, r)| *r == 0).count() as u64, trials);
    if trials >= 162 {
        // The guard measured rung 0 on 18 trials promoted whatever their rank (all agree here,
        // so it then decides): more than the third of rung 0 went on.
        let (n0, n1) = (rungs.iter().filter(|r| r.rung == 0).count(), rungs.iter().filter(|r| r.rung == 1).count());
        assert!(n1 > n0 / 3, "{n1} of {n0}");
    }
    // ASHA's guarantee once done: the best floor(n / 3) of each rung went on (asynchronous
    // promotions made early may add others).
    for k in 0..3u32 {
        let mut at: Vec<(f64, u64)> = rungs.iter().filter(|r| r.rung == k).map(|r| (r.best_value.unwrap(), r.number)).collect();
        at.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let next: BTreeSet<u64> = rungs.iter().filter(|r| r.rung == k + 1).map(|r| r.number).collect();
        assert!(next.len() >= at.len() / 3 && next.len() <= at.len());
        assert!(at[..at.len() / 3].iter().all(|(_, n)| next.contains(n)), "rung {k}: {at:?} -> {next:?}");
    }
    assert!(rungs.iter().all(|r| r.state == TrialState::Complete));
    // Every promotion resumed from the end of the previous rung (a constant schedule).
    assert!(
        rungs
            .iter()
            .filter(|r| r.rung > 0)
            .all(|r| matches!(r.entry, RungEntry::Resumed { from, step } if from + 1 == r.rung && step > 0))
    );
}

#[test]
fn sqlite_separate_connections_run_one_ladder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("horizon.db");
    let open = || Arc::new(SqliteStorage::open(&path).unwrap()) as Arc<dyn Storage>;
    concurrent_ladder(&open, 4, 27);
}

/// A ladder large enough for the rank-correlation guard (`eta^2 * calibration` = 162 trials):
/// rungs measured on a sample promoted whatever its rank, and still no rung run twice and the
/// best third of each rung promoted.
#[test]
fn sqlite_separate_connections_run_one_guarded_ladder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("horizon.db");
    let open = || Arc::new(SqliteStorage::open(&path).unwrap()) as Arc<dyn Storage>;
    concurrent_ladder(&open, 3, 170);
}

// ---------------------------------------------------------------------------------------------
// Moving a study between databases (and backends)

/// Everything stored of study `name`, with ids replaced by trial numbers (ids are each
/// database's own).
fn everything(s: &dyn Storage, name: &str) -> Vec<String> {
    let st = s.study(name).unwrap().unwrap();
    let trials = s.trials(st.id).unwrap();
    let number = |id: TrialId| trials.iter().find(|t| t.id == id).unwrap().number;
    let mut out = vec![format!("{:?}", StudyRecord { id: 0, ..st.clone() })];
    for t in &trials {
        out.push(format!("{:?}", TrialRecord { id: 0, ..t.clone() }));
        for r in s.rungs(st.id).unwrap().iter().filter(|r| r.trial == t.id) {
            out.push(format!(
                "rung {:?} {:?}",
                {
                    let mut r = r.clone();
                    r.trial = 0;
                    r
                },
                s.rung_metrics(t.id, r.rung).unwrap()
            ));
        }
        for c in s.checkpoints(t.id).unwrap() {
            out.push(format!("checkpoint {} {} {} {} {}", t.number, c.attempt, c.step, c.path, c.deleted));
        }
        for w in s.warnings(t.id).unwrap() {
            out.push(format!("warning {} {} {}", t.number, w.attempt, w.message));
        }
        for a in s.attempts(t.id).unwrap() {
            out.push(format!("{:?}", horizon_store::AttemptRecord { trial: number(a.trial) as i64, ..a }));
        }
    }
    for i in s.imports(st.id).unwrap() {
        out.push(format!("import {} {} {:?}", number(i.trial), i.origin, i.source));
    }
    out
}

/// A study with a bit of everything: a ladder's promotion (metrics per rung, checkpoints), a
/// retry, a failure, warnings, a NaN, an import.
fn rich_study(s: &dyn Storage) {
    let st = study(s, "moved");
    s.import_trials(st.id, &[imported(1, TrialState::Complete, vec![point(100, "loss", 0.9), point(300, "loss", 0.8)])]).unwrap();
    let policy = ladder_policy(3, &[100, 300], Some(20));
    for (i, value) in [0.5, 0.2, f64::NAN].into_iter().enumerate() {
        let c = claim_with(s, &st, &policy, &lease("w1", 100.0 + i as f64)).unwrap();
        let t = &c.trial;
        s.append_metrics(t.id, 1, &[point(80, "loss", value + 0.1), point(100, "loss", value)]).unwrap();
        s.append_warnings(t.id, 1, &[format!("warning of trial {}", t.number)]).unwrap();
        s.record_checkpoint(t.id, 1, 80, "ckpt-80").unwrap();
        let state = if value.is_nan() { TrialState::Failed } else { TrialState::Complete };
        let done = Finish { selection: Some(selection((100, value), (100, value))), steps_run: 100, ..finish(state) };
        s.finish_attempt(t.id, 1, &done).unwrap();
    }
    let c = claim_with(s, &st, &policy, &lease("w2", 200.0)).expect("a promotion");
    s.append_metrics(c.trial.id, c.trial.attempt, &[point(300, "loss", 0.1)]).unwrap();
    let done = Finish { selection: Some(selection((300, 0.1), (300, 0.1))), steps_run: 220, ..finish(TrialState::Complete) };
    s.finish_attempt(c.trial.id, c.trial.attempt, &done).unwrap();
}

/// SQLite -> PostgreSQL -> SQLite: every row of the study arrives as it was, the copy goes on
/// numbering trials and samples where the original would, and a running study is not moved.
#[test]
fn a_study_moves_between_sqlite_and_postgres_whole() {
    let sqlite = SqliteStorage::open_in_memory().unwrap();
    rich_study(&sqlite);
    let original = everything(&sqlite, "moved");
    assert!(original.len() > 15, "{original:#?}");

    let db = horizon_store::testing::scratch_database();
    let pg = PostgresStorage::open(&db.url, Access::ReadWrite).unwrap();
    let dump = sqlite.dump_study(sqlite.study("moved").unwrap().unwrap().id).unwrap();
    assert_eq!((dump.trials(), dump.rows("metrics") > 0), (4, true));
    pg.restore_study(&dump, false).unwrap();
    assert_eq!(everything(&pg, "moved"), original, "on PostgreSQL");
    // Once there, it is the study's only home: a second copy of the name is refused.
    assert!(matches!(pg.restore_study(&dump, false), Err(StoreError::StudyExists { .. })));
    // Replacing it puts the same study there again, not a second one.
    pg.restore_study(&dump, true).unwrap();
    assert_eq!(everything(&pg, "moved"), original, "replaced on PostgreSQL");
    assert_eq!(pg.studies().unwrap().len(), 1);

    let back = SqliteStorage::open_in_memory().unwrap();
    back.restore_study(&pg.dump_study(pg.study("moved").unwrap().unwrap().id).unwrap(), false).unwrap();
    assert_eq!(everything(&back, "moved"), original, "back on SQLite");

    // The copy continues as the original: the next claim is the same trial, sample and number.
    let policy = FixedBudget { trials: 10, max_train_steps: 100 };
    let next = |s: &dyn Storage| {
        let st = s.study("moved").unwrap().unwrap();
        match s.claim_trial(st.id, &request(&policy, &lease("w3", 400.0))).unwrap() {
            Claim::Run(c) => (c.trial.number, c.trial.sample_index, c.trial.params),
            other => panic!("{other:?}"),
        }
    };
    let expected = next(&sqlite);
    assert_eq!(next(&pg), expected);
    assert_eq!(next(&back), expected);
    // Now a trial runs there: it is not moved while a worker may write it.
    let err = pg.dump_study(pg.study("moved").unwrap().unwrap().id).err().unwrap().to_string();
    assert!(err.contains("is running") && err.contains("fix:"), "{err}");
}
