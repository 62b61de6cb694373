//! Control commands from the Redis channel, applied to the hub.

use redisctl::{Command, CommandSink};
use tracing::{info, warn};

/// Applies Redis control commands to the live streams.
pub struct Commands {
    hub: hub::Hub,
}

impl Commands {
    /// Commands acting on `hub`.
    pub fn new(hub: hub::Hub) -> Commands {
        Commands { hub }
    }
}

impl CommandSink for Commands {
    fn apply(&self, cmd: Command) {
        let done = match &cmd {
            Command::KillSession { code } => self.hub.kick_publisher(code),
            Command::CloseStream { code, stream_id } => {
                self.hub.kick_publisher_with_id(code, stream_id)
            }
        };
        if done {
            info!(command = %cmd, "redis command applied");
        } else {
            warn!(command = %cmd, "redis command matched no live publisher");
        }
    }
}
