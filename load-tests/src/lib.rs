//! load-tests
