//! Raw ETW types and routine signatures.
