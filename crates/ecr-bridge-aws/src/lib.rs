//! AWS adapters of ecr-bridge and the use cases built on them. Lambda types
//! stay in `functions/`: these are called from the handlers, the CLI and the
//! tests alike.
//!
//! - adapters: [`sts`] (roles), [`registries`] (ECR registries of any account),
//!   [`repositories`] (ECR control plane), [`mapping_store`] (SSM),
//!   [`work_queue`] (SQS, and the work item's format), [`error`];
//! - use cases: [`replicator`] (an [`image_action`] in, every destination up
//!   to date), [`backfill`], [`preview`] (the CLI's `plan`), [`access_sync`];
//! - what the functions' processes (and the CLI) need around them: [`emf`]
//!   metrics, [`logging`], [`env`] configuration.

pub mod access_sync;
pub mod backfill;
pub mod deadline;
pub mod emf;
pub mod env;
pub mod error;
pub mod event_bus;
mod hex_id;
pub mod image_action;
pub mod logging;
pub mod mapping_store;
pub mod preview;
pub mod registries;
pub mod replicator;
pub mod repositories;
pub mod run_table;
pub mod sts;
pub mod work_queue;

pub use error::AwsError;
