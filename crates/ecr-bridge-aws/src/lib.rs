//! AWS adapters of ecr-bridge (STS, ECR, SSM) and the use cases built on
//! them. Lambda types stay in `functions/`: these are called from the
//! handlers, the CLI and the tests alike.

pub mod access_sync;
pub mod backfill;
pub mod emf;
pub mod env;
pub mod error;
pub mod logging;
pub mod loop_guard;
pub mod mapping_store;
pub mod plan;
pub mod registries;
pub mod replicator;
pub mod repositories;

pub use error::AwsError;
