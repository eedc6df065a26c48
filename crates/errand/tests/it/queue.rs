//! The durable job queue on both databases: claims, leases, rescue, retries, dead jobs,
//! delayed jobs, one live job per order, concurrent claimers and worker wake-ups.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use errand::queue::worker::{Handlers, WorkerOptions, WorkerPool};
use errand::queue::{self, JobKind, JobState, NewJob, Outcome, RetryPolicy};
use errand::storage::Db;
use errand::storage::Timestamp;
use futures_util::FutureExt;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);
const POLICY: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(10),
    max: Duration::from_millis(20),
};

fn job(kind: JobKind) -> NewJob {
    NewJob::now(kind, Some(Uuid::now_v7()), 3)
}

/// Enqueues jobs in a transaction of their own.
async fn enqueue(db: &Db, jobs: &[NewJob]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    queue::enqueue(&mut tx, jobs).await?;
    tx.commit().await
}

crate::on_both_databases! {
    async fn a_claimed_job_is_not_claimed_again_until_it_is_settled(app: TestDb) {
        let db = &app.db;
        enqueue(db, &[job(JobKind::Noop)]).await.unwrap();
        let claimed = queue::claim(db, "w1", &[], 10, LEASE, &JobKind::ALL).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].attempt, 1);
        assert!(queue::claim(db, "w2", &[], 10, LEASE, &JobKind::ALL).await.unwrap().is_empty());

        // Only the worker holding it can finish it.
        queue::complete(db, "w2", &[claimed[0].claim()]).await.unwrap();
        assert_eq!(queue::list(db, None, 10).await.unwrap().len(), 1);
        queue::complete(db, "w1", &[claimed[0].claim()]).await.unwrap();
        assert!(queue::list(db, None, 10).await.unwrap().is_empty());
    }

    async fn a_run_that_lost_its_claim_cannot_settle_the_new_one(app: TestDb) {
        let db = &app.db;
        enqueue(db, &[job(JobKind::Noop)]).await.unwrap();
        // The same worker claims the job, stalls past its lease, and claims it again.
        let stale = queue::claim(db, "w", &[], 1, Duration::from_millis(1), &JobKind::ALL).await.unwrap().remove(0);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(queue::rescue_expired(db).await.unwrap().len(), 1);
        let current = queue::claim(db, "w", &[], 1, LEASE, &JobKind::ALL).await.unwrap().remove(0);
        assert_eq!((current.id, current.attempt), (stale.id, stale.attempt + 1));

        // What the stalled run records is ignored: the job stays with the current run.
        queue::complete(db, "w", &[stale.claim()]).await.unwrap();
        queue::settle(db, "w", &stale, &Outcome::Snooze(Duration::ZERO), &POLICY).await.unwrap();
        let jobs = queue::list(db, None, 10).await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].state, JobState::Running, "{jobs:?}");
        assert_eq!(jobs[0].attempt, current.attempt);
        queue::complete(db, "w", &[current.claim()]).await.unwrap();
        assert!(queue::list(db, None, 10).await.unwrap().is_empty());
    }

    async fn delayed_jobs_wait_for_their_time(app: TestDb) {
        let db = &app.db;
        let later = Timestamp::now().after(Duration::from_secs(3600));
        enqueue(db, &[job(JobKind::Noop).at(later)]).await.unwrap();
        assert!(queue::claim(db, "w", &[], 10, LEASE, &JobKind::ALL).await.unwrap().is_empty());
        assert_eq!(queue::next_due(db).await.unwrap(), Some(later));
    }

    async fn one_live_job_per_kind_and_order(app: TestDb) {
        let db = &app.db;
        let order = Some(Uuid::now_v7());
        let first = NewJob::now(JobKind::PlaceOrder, order, 3);
        enqueue(db, &[first.clone(), first.clone()]).await.unwrap();
        enqueue(db, std::slice::from_ref(&first)).await.unwrap();
        enqueue(db, &[NewJob::now(JobKind::TrackOrder, order, 3)]).await.unwrap();
        let jobs = queue::list(db, None, 10).await.unwrap();
        assert_eq!(jobs.len(), 2, "{jobs:?}");
    }

    async fn an_expired_lease_is_rescued_and_the_job_runs_again(app: TestDb) {
        let db = &app.db;
        enqueue(db, &[job(JobKind::Noop)]).await.unwrap();
        let claimed = queue::claim(db, "dead-worker", &[], 1, Duration::from_millis(1), &JobKind::ALL).await.unwrap();
        assert_eq!(claimed.len(), 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let rescued = queue::rescue_expired(db).await.unwrap();
        assert_eq!(rescued.len(), 1);
        let again = queue::claim(db, "w2", &[], 1, LEASE, &JobKind::ALL).await.unwrap();
        assert_eq!(again[0].id, claimed[0].id);
        assert_eq!(again[0].attempt, 2, "the crashed run counts as an attempt");

        // A heartbeat keeps a lease alive.
        queue::heartbeat(db, "w2", LEASE).await.unwrap();
        assert!(queue::rescue_expired(db).await.unwrap().is_empty());
    }

    async fn failures_back_off_then_die_and_an_operator_can_revive_them(app: TestDb) {
        let db = &app.db;
        enqueue(db, &[job(JobKind::Noop)]).await.unwrap();
        for attempt in 1..=3 {
            let mut claimed = vec![];
            for _ in 0..100 {
                claimed = queue::claim(db, "w", &[], 1, LEASE, &JobKind::ALL).await.unwrap();
                if !claimed.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let job = claimed.pop().expect("the retry becomes due");
            assert_eq!(job.attempt, attempt);
            let failed = Outcome::Retry { error: format!("boom {attempt}"), after: None };
            queue::settle(db, "w", &job, &failed, &POLICY).await.unwrap();
        }
        let dead = queue::list(db, Some(JobState::Dead), 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].last_error.as_deref(), Some("boom 3"));
        assert!(queue::claim(db, "w", &[], 1, LEASE, &JobKind::ALL).await.unwrap().is_empty());

        assert!(queue::retry_dead(db, dead[0].id).await.unwrap());
        assert!(!queue::retry_dead(db, dead[0].id).await.unwrap(), "no longer dead");
        let revived = queue::claim(db, "w", &[], 1, LEASE, &JobKind::ALL).await.unwrap();
        assert_eq!(revived[0].attempt, 1);
    }

    async fn snoozing_does_not_use_an_attempt(app: TestDb) {
        let db = &app.db;
        enqueue(db, &[job(JobKind::Noop)]).await.unwrap();
        let job = queue::claim(db, "w", &[], 1, LEASE, &JobKind::ALL).await.unwrap().pop().unwrap();
        queue::settle(db, "w", &job, &Outcome::Snooze(Duration::ZERO), &POLICY).await.unwrap();
        let again = queue::claim(db, "w", &[], 1, LEASE, &JobKind::ALL).await.unwrap().pop().unwrap();
        assert_eq!(again.attempt, 1);
    }

    async fn concurrent_claimers_never_share_a_job(app: TestDb) {
        let db = app.db.clone();
        let jobs: Vec<NewJob> = (0..600).map(|_| NewJob::now(JobKind::Noop, None, 3)).collect();
        enqueue(&db, &jobs).await.unwrap();
        let claimers = (0..6).map(|w| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut mine = vec![];
                loop {
                    let batch = queue::claim(&db, &format!("w{w}"), &[], 7, LEASE, &JobKind::ALL).await.unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|j| j.id));
                }
            })
        });
        let mut seen = HashSet::new();
        let mut total = 0;
        for claimer in claimers {
            for id in claimer.await.unwrap() {
                total += 1;
                assert!(seen.insert(id), "job {id} was claimed twice");
            }
        }
        assert_eq!(total, 600);
    }

    async fn a_worker_pool_runs_what_is_enqueued(app: TestDb) {
        let db = app.db.clone();
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = ran.clone();
        let mut handlers = Handlers::new();
        handlers.register(JobKind::Noop, Arc::new(move |_job| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Outcome::Done
            }
            .boxed()
        }));
        let pool = WorkerPool::start(
            db.clone(),
            WorkerOptions { concurrency: 4, lease: LEASE, retry: POLICY },
            handlers,
        );
        // Enqueued while the pool waits: it is woken, not left to a poll.
        for _ in 0..5 {
            enqueue(&db, &[NewJob::now(JobKind::Noop, None, 3)]).await.unwrap();
        }
        for _ in 0..500 {
            if ran.load(Ordering::SeqCst) == 5 && queue::list(&db, None, 10).await.unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(ran.load(Ordering::SeqCst), 5);
        assert!(queue::list(&db, None, 10).await.unwrap().is_empty(), "finished jobs are removed");
        pool.stop(Duration::from_secs(1)).await;
    }
}
