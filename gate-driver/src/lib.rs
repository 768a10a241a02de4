//! gate-driver: the Windows kernel driver (WSK conditional-accept gate).
#![no_std]

extern crate alloc;

pub mod etw;
