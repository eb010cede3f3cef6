//! The verifier end to end: real keys generated per run, real tokens, a real JWKS server on
//! 127.0.0.1:0. One module per concern; one test binary to keep linking cheap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attacks;
mod formats;
mod https;
mod jwks;
mod keys;
mod support;
