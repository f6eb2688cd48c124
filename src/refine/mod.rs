//! Refinement: splitting items into their most valuable slices, rolling
//! value up the goal tree, and validating value after release. Pure
//! functions over plain data; the engine and the API do the I/O.

pub mod customer;
pub mod rollup;
pub mod since;
pub mod split;
pub mod validate;
