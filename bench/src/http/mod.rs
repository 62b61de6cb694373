//! HLS/DASH load generation: an HTTP/1.1 client, playlist readers and the simulated players.

pub mod client;
pub mod player;
pub mod playlist;
