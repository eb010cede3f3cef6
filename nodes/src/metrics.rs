//! Prometheus metrics of one replica process, named `tandem_<component>_<what>_<unit>` and
//! labelled with the node, replica and kind. Served at `/metrics` on the health port.

use crate::replica::{Identity, Role};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry,
};

#[derive(Clone)]
pub struct NodeMetrics {
    registry: Registry,
    pub replica_active: IntGauge,
    pub replica_epoch: IntGauge,
    pub replica_transitions: IntCounterVec,
    pub fenced_writes: IntCounter,
    pub database_errors: IntCounter,
    pub lease_renewal_seconds: Histogram,
    /// Participants: where a submitted transaction's time goes, measured by the submitting
    /// participant (see [`crate::participant`]).
    pub transaction_phase_seconds: HistogramVec,
}

impl NodeMetrics {
    pub fn new(id: &Identity) -> Result<Self, prometheus::Error> {
        let labels = [
            ("node".to_string(), id.node.clone()),
            ("replica".to_string(), id.replica.to_string()),
            ("kind".to_string(), id.kind.as_str().to_string()),
        ]
        .into_iter()
        .collect();
        let registry = Registry::new_custom(None, Some(labels))?;
        let replica_active =
            IntGauge::new("tandem_replica_active", "1 while this replica is active")?;
        let replica_epoch = IntGauge::new(
            "tandem_replica_epoch",
            "leadership epoch held by this replica, 0 when passive",
        )?;
        let replica_transitions = IntCounterVec::new(
            Opts::new(
                "tandem_replica_transitions_total",
                "role transitions, by the role entered",
            ),
            &["to"],
        )?;
        let fenced_writes = IntCounter::new(
            "tandem_replica_fenced_writes_total",
            "writes refused because this replica's epoch was superseded",
        )?;
        let database_errors = IntCounter::new(
            "tandem_store_errors_total",
            "failed database round trips of the replica manager",
        )?;
        let lease_renewal_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "tandem_replica_lease_renewal_seconds",
                "time to renew the leader lease",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
        )?;
        let transaction_phase_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tandem_participant_transaction_phase_seconds",
                "a submitted transaction's time per phase, at the submitting participant: \
                 submitted → request sequenced, request → verdict sequenced, \
                 verdict sequenced → committed",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["phase"],
        )?;
        registry.register(Box::new(transaction_phase_seconds.clone()))?;
        registry.register(Box::new(replica_active.clone()))?;
        registry.register(Box::new(replica_epoch.clone()))?;
        registry.register(Box::new(replica_transitions.clone()))?;
        registry.register(Box::new(fenced_writes.clone()))?;
        registry.register(Box::new(database_errors.clone()))?;
        registry.register(Box::new(lease_renewal_seconds.clone()))?;
        Ok(Self {
            registry,
            replica_active,
            replica_epoch,
            replica_transitions,
            fenced_writes,
            database_errors,
            lease_renewal_seconds,
            transaction_phase_seconds,
        })
    }

    pub(crate) fn transition(&self, to: Role, epoch: u64) {
        self.replica_active.set(i64::from(to == Role::Active));
        self.replica_epoch
            .set(i64::try_from(epoch).unwrap_or(i64::MAX));
        self.replica_transitions
            .with_label_values(&[to.as_str()])
            .inc();
    }

    /// The registry in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
