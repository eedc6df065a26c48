//! Group commit for new orders: every `POST /orders` hands its insert to one writer task,
//! which commits whatever has queued up as one transaction. One fsync then covers many
//! orders, so throughput is not capped by the disk's fsync rate, while each request
//! still returns only after its order is durable.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::store::{self, ExistingClaim, PendingInsert};
use crate::storage::Db;

/// Most orders committed in one transaction.
const MAX_BATCH: usize = 256;
/// Inserts waiting for the writer before `POST /orders` waits for room.
const QUEUE_DEPTH: usize = 4096;

/// `Ok(None)`: inserted. `Ok(Some(claim))`: the idempotency key was already taken, by
/// the order the claim names; nothing was inserted.
pub type WriteResult = Result<Option<ExistingClaim>, Arc<sqlx::Error>>;

struct Job {
    insert: PendingInsert,
    reply: oneshot::Sender<WriteResult>,
}

#[derive(Clone)]
pub struct OrderWriter {
    queue: mpsc::Sender<Job>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("the order writer has stopped")]
    Stopped,
    #[error(transparent)]
    Database(Arc<sqlx::Error>),
}

impl OrderWriter {
    /// Starts the writer task; it ends once every handle is dropped and the queue is empty.
    pub fn spawn(db: Db) -> OrderWriter {
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(db, jobs));
        OrderWriter { queue }
    }

    pub async fn insert(
        &self,
        insert: PendingInsert,
    ) -> Result<Option<ExistingClaim>, WriterError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { insert, reply })
            .await
            .map_err(|_| WriterError::Stopped)?;
        answer
            .await
            .map_err(|_| WriterError::Stopped)?
            .map_err(WriterError::Database)
    }
}

async fn run(db: Db, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit(&db, std::mem::take(&mut batch)).await;
    }
}

/// Commits one batch and answers every job in it.
async fn commit(db: &Db, jobs: Vec<Job>) {
    // A key repeated within the batch: the first job claims it, the others are answered
    // as if the first had already been committed (it is, by the time they hear back).
    let mut leaders: Vec<Job> = Vec::with_capacity(jobs.len());
    let mut followers: Vec<(usize, Job)> = Vec::new();
    let mut leader_by_key: HashMap<(Uuid, bool, String), usize> = HashMap::new();
    for job in jobs {
        let key = job.insert.idempotency.as_ref().map(|c| {
            (
                job.insert.tenant.account_id,
                job.insert.tenant.livemode,
                c.key.clone(),
            )
        });
        match key {
            Some(key) if leader_by_key.contains_key(&key) => {
                followers.push((leader_by_key[&key], job))
            }
            Some(key) => {
                leader_by_key.insert(key, leaders.len());
                leaders.push(job);
            }
            None => leaders.push(job),
        }
    }

    let inserts: Vec<PendingInsert> = leaders.iter().map(|j| j.insert.clone()).collect();
    let results: Vec<WriteResult> = match store::insert_batch(db, &inserts).await {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        Err(error) if inserts.len() == 1 => vec![Err(Arc::new(error))],
        Err(error) => {
            // Commit them one by one so only the job that caused the failure fails.
            tracing::warn!(error = %error, orders = inserts.len(), "batched insert failed; retrying orders one by one");
            let mut results = Vec::with_capacity(inserts.len());
            for insert in &inserts {
                results.push(
                    match store::insert_batch(db, std::slice::from_ref(insert)).await {
                        Ok(mut outcome) => Ok(outcome.pop().flatten()),
                        Err(e) => Err(Arc::new(e)),
                    },
                );
            }
            results
        }
    };

    for (leader_index, job) in followers {
        let leader = &leaders[leader_index];
        let result = match &results[leader_index] {
            Ok(None) => Ok(Some(ExistingClaim {
                fingerprint: leader
                    .insert
                    .idempotency
                    .as_ref()
                    .map(|c| c.fingerprint.clone())
                    .unwrap_or_default(),
                order_id: leader.insert.order.id,
            })),
            other => other.clone(),
        };
        let _ = job.reply.send(result);
    }
    for (job, result) in leaders.into_iter().zip(results) {
        let _ = job.reply.send(result);
    }
}
