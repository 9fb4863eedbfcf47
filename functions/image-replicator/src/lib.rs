//! The image replicator Lambda: a thin adapter from EventBridge's
//! `ECR Image Action` events to [`ecr_bridge_aws::replicator::Replicator`].

pub mod config;
pub mod event;
pub mod handler;
