//! gate-ksys: raw bindings to the Windows kernel and WSK surface the gate uses.
#![no_std]

pub mod etw;
