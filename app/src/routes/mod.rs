//! One file per page.

pub mod lazy;
pub mod new_policy;
pub mod overview;
pub mod plan;
pub mod policy;
pub mod simulate;
pub mod traffic;
