//! After the sale, on the store clock: orders ship (in one or two shipments, each with a
//! carrier and a well-formed tracking number) and are delivered; approved returns come
//! back to the store and are credited. `time_scale` speeds the clock up (86 400 makes a
//! store day last a second), so tests take seconds.

use std::time::Duration;

use rand::Rng;
use time::OffsetDateTime;

use crate::db::Db;

/// The store's clock: how fast store time runs against real time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub time_scale: f64,
}

/// Days a return may be requested after delivery.
pub const RETURN_WINDOW_DAYS: f64 = 30.0;
/// Days from a return's approval until its parcel is back at the store (`received`).
pub const RETURN_TRANSIT_DAYS: f64 = 3.0;
/// Days from a return's receipt until its refund is credited (`credited`).
pub const REFUND_DAYS: f64 = 2.0;
/// Orders the store can ship at once (no handling time) still take this long to pack.
const MIN_HANDLING_DAYS: f64 = 0.25;

impl Clock {
    /// The real instant at which `store_days` of store time have passed since `from`.
    pub fn after(&self, from: OffsetDateTime, store_days: f64) -> OffsetDateTime {
        let seconds = store_days * 86_400.0 / self.time_scale.max(f64::MIN_POSITIVE);
        from + time::Duration::seconds_f64(seconds.min(1e12))
    }

    /// When an order placed at `placed` ships and arrives.
    pub fn schedule(
        &self,
        placed: OffsetDateTime,
        handling_days: i64,
        transit_days: i64,
    ) -> (OffsetDateTime, OffsetDateTime) {
        let handling = (handling_days as f64).max(MIN_HANDLING_DAYS);
        let ship = self.after(placed, handling);
        (ship, self.after(ship, transit_days as f64))
    }
}

/// A carrier and a tracking number in that carrier's format.
pub fn tracking_number(rng: &mut impl Rng) -> (&'static str, String) {
    let digits = |n: usize, rng: &mut dyn rand::RngCore| -> String {
        (0..n)
            .map(|_| char::from(b'0' + (rng.next_u32() % 10) as u8))
            .collect()
    };
    match rng.random_range(0..3) {
        0 => ("USPS", format!("9400{}", digits(18, rng))),
        1 => {
            let shipper: String = (0..6)
                .map(|_| {
                    let chars = b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789";
                    char::from(chars[rng.random_range(0..chars.len())])
                })
                .collect();
            ("UPS", format!("1Z{shipper}{}", digits(10, rng)))
        }
        _ => ("FedEx", digits(12, rng)),
    }
}

/// Moves due orders along (placed → shipped → delivered) and returns (approved →
/// received → credited), forever, checking a few times a second.
pub async fn run(db: Db, clock: Clock) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = db.advance(OffsetDateTime::now_utc(), clock).await {
            tracing::warn!(error = %e, "the store clock could not advance orders and returns");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_numbers_are_well_formed() {
        let mut rng = rand::rng();
        for _ in 0..200 {
            let (carrier, number) = tracking_number(&mut rng);
            match carrier {
                "USPS" => assert!(
                    number.len() == 22
                        && number.starts_with("94")
                        && number.bytes().all(|b| b.is_ascii_digit())
                ),
                "UPS" => assert!(
                    number.len() == 18
                        && number.starts_with("1Z")
                        && number.bytes().all(|b| b.is_ascii_alphanumeric())
                ),
                "FedEx" => {
                    assert!(number.len() == 12 && number.bytes().all(|b| b.is_ascii_digit()))
                }
                other => panic!("unknown carrier {other}"),
            }
        }
    }

    #[test]
    fn the_clock_scales_store_days() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let fast = Clock {
            time_scale: 86_400.0,
        };
        assert_eq!(fast.after(t0, 2.0) - t0, time::Duration::seconds(2));
        let (ship, arrive) = fast.schedule(t0, 0, 5);
        assert_eq!(ship - t0, time::Duration::seconds_f64(0.25));
        assert_eq!(arrive - ship, time::Duration::seconds(5));
        let real = Clock { time_scale: 1.0 };
        assert_eq!(real.after(t0, 1.0) - t0, time::Duration::days(1));
    }
}
