//! placeholder

pub mod reference;
