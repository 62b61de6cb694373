// ferrocast: vendored third-party code (see FERROCAST-PATCHES.md); its own warnings are
// upstream's, shown here only because path dependencies are not capped like registry ones.
#![allow(warnings)]

pub mod access;
pub mod connection;
pub mod listener;
pub mod options;
pub mod packet;
pub mod protocol;
pub mod settings;
pub mod statistics;
