//! gate-usersim
