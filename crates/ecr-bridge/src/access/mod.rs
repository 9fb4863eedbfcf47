//! Access sync's domain: which ECR repository belongs to a user (Gen3's
//! escaping, byte for byte), which AWS accounts the users table grants, and
//! how our statement is merged into a repository policy without touching
//! anyone else's. Pure functions: the AWS calls live in `ecr-bridge-aws`.

pub mod account;
pub mod admission;
pub mod collision;
pub mod desired;
pub mod naming;
pub mod policy;

pub use account::{AccountError, AccountId, AccountValue};
pub use admission::{Admission, AdmissionError, LeftOut, Step, WriteVerdict};
pub use collision::{colliding_ids, resolve, Contest, ContestKind, Resolved};
pub use desired::{desired_accounts, Desired, Row, Selection, SkippedRow};
pub use naming::{escape, repository_name, NamingError};
pub use policy::{merge_policy, PolicyChange, PolicyError, PolicyMerge, PolicySpec};
