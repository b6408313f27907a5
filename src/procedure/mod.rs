//! The runbook's procedures as a library that `upgrade` and `rollback`
//! share: the plan ([`plan`]), the health gate after each helm step
//! ([`gate`], which also rolls OnDelete StatefulSets), carrying the steps
//! out and deciding what happens after a failure ([`run`]), and the
//! record of runs ([`history`]). The lock is `cluster::lease`.

pub mod bluegreen;
pub mod gate;
pub mod history;
pub mod plan;
pub mod run;
