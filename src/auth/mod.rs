//! Identity: password hashing, the user store and the default-admin seed.

pub mod db;
pub mod password;
pub mod seed;
