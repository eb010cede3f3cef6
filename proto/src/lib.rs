//! Tandem's gRPC contracts. The `.proto` files under `proto/` are the source of truth; this crate
//! only includes the code tonic and prost generate from them. No logic lives here.

/// Admin services every replica serves on its admin port.
pub mod admin {
    /// Version 1 of the admin API.
    pub mod v1 {
        tonic::include_proto!("tandem.admin.v1");
    }
}

/// The sequencer API and its admin service.
pub mod sequencer {
    /// Version 1 of the sequencer API.
    pub mod v1 {
        tonic::include_proto!("tandem.sequencer.v1");
    }
}

/// Topology transactions and the topology manager's admin API.
pub mod topology {
    /// Version 1 of the topology API.
    pub mod v1 {
        tonic::include_proto!("tandem.topology.v1");
    }
}

/// The messages members exchange through the sequencer.
pub mod synchronizer {
    /// Version 1 of the synchronizer messages.
    pub mod v1 {
        tonic::include_proto!("tandem.synchronizer.v1");
    }
}

/// The mediator's admin API.
pub mod mediator {
    /// Version 1 of the mediator admin API.
    pub mod v1 {
        tonic::include_proto!("tandem.mediator.v1");
    }
}

/// The Ledger API, shaped after Canton's Ledger API v2.
pub mod ledger {
    /// Version 2 of the Ledger API.
    pub mod v2 {
        tonic::include_proto!("tandem.ledger.v2");
    }
}

/// A participant's admin API.
pub mod participant {
    /// Version 1 of the participant admin API.
    pub mod v1 {
        tonic::include_proto!("tandem.participant.v1");
    }
}

/// Well-known protobuf types (`google.protobuf.Value` carries ledger values).
pub use prost_types;

/// The standard gRPC health service (`grpc.health.v1`), served through `tonic-health`.
pub use tonic_health as health;
