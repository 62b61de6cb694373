//! The command language: `COMMAND>ARG1|ARG2`, one command per pub/sub message.
//!
//! As in AgustinSRG's rtmp-server (`redis_cmds.go`, `parseRedisCommand`): the name is matched
//! case-sensitively (its Rust port, rtmp-server-rs, lowercases it; every sender we know writes
//! lowercase), arguments are split at `|`, and arguments beyond those a command needs are
//! ignored. Stricter than it: whitespace around parts is trimmed, and codes must look like codes.

use std::fmt;

/// Longest message parsed, in bytes; longer ones are refused before any other work.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// Longest stream code or stream id accepted, in characters (AgustinSRG's `ID_MAX_LENGTH`
/// default, and ferrocast's own stream code limit).
pub const MAX_ID_LEN: usize = 128;

const KILL_SESSION: &str = "kill-session";
const CLOSE_STREAM: &str = "close-stream";

/// A control command.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// `kill-session>CODE`: close whatever publishes on stream `code`.
    KillSession {
        /// The stream code (AgustinSRG's "channel").
        code: String,
    },
    /// `close-stream>CODE|STREAM_ID`: close the publisher of `code` only if its session is
    /// `stream_id` (the id the start hook assigned), so a late command cannot kill a newer
    /// session on the same code.
    CloseStream {
        /// The stream code (AgustinSRG's "channel").
        code: String,
        /// The publishing session's id.
        stream_id: String,
    },
}

impl Command {
    /// The stream code the command targets.
    pub fn code(&self) -> &str {
        match self {
            Self::KillSession { code } | Self::CloseStream { code, .. } => code,
        }
    }
}

impl fmt::Display for Command {
    /// The wire form, which [`parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KillSession { code } => write!(f, "{KILL_SESSION}>{code}"),
            Self::CloseStream { code, stream_id } => write!(f, "{CLOSE_STREAM}>{code}|{stream_id}"),
        }
    }
}

/// Why a message is not a command; the listener logs it and carries on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Longer than [`MAX_MESSAGE_LEN`].
    #[error("message of {len} bytes exceeds {MAX_MESSAGE_LEN}")]
    TooLong {
        /// The message length in bytes.
        len: usize,
    },
    /// Not UTF-8.
    #[error("message is not UTF-8")]
    NotUtf8,
    /// No `>` between command name and arguments.
    #[error("no '>' after the command name")]
    MissingSeparator,
    /// A name other than `kill-session` or `close-stream`.
    #[error("unknown command {name:?}")]
    UnknownCommand {
        /// The name received, cut to 64 characters.
        name: String,
    },
    /// A required argument is absent or blank.
    #[error("{command}: missing {argument}")]
    MissingArgument {
        /// The command name.
        command: &'static str,
        /// `stream code` or `stream id`.
        argument: &'static str,
    },
    /// An argument that cannot be a stream code or stream id.
    #[error("{command}: invalid {argument}: {reason}")]
    InvalidArgument {
        /// The command name.
        command: &'static str,
        /// `stream code` or `stream id`.
        argument: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Parses a raw pub/sub payload: checks the size before decoding it as UTF-8.
pub fn parse_bytes(msg: &[u8]) -> Result<Command, ParseError> {
    if msg.len() > MAX_MESSAGE_LEN {
        return Err(ParseError::TooLong { len: msg.len() });
    }
    let s = std::str::from_utf8(msg).map_err(|_| ParseError::NotUtf8)?;
    parse(s)
}

/// Parses one message such as `kill-session>live1` or `close-stream>live1|4f2a`.
pub fn parse(msg: &str) -> Result<Command, ParseError> {
    if msg.len() > MAX_MESSAGE_LEN {
        return Err(ParseError::TooLong { len: msg.len() });
    }
    let (name, args) = msg.split_once('>').ok_or(ParseError::MissingSeparator)?;
    let mut args = args.split('|').map(str::trim);
    match name.trim() {
        KILL_SESSION => Ok(Command::KillSession {
            code: id(KILL_SESSION, "stream code", args.next())?,
        }),
        CLOSE_STREAM => Ok(Command::CloseStream {
            code: id(CLOSE_STREAM, "stream code", args.next())?,
            stream_id: id(CLOSE_STREAM, "stream id", args.next())?,
        }),
        other => Err(ParseError::UnknownCommand {
            name: other.chars().take(64).collect(),
        }),
    }
}

fn id(
    command: &'static str,
    argument: &'static str,
    value: Option<&str>,
) -> Result<String, ParseError> {
    let invalid = |reason| ParseError::InvalidArgument {
        command,
        argument,
        reason,
    };
    let value = match value {
        Some(v) if !v.is_empty() => v,
        _ => return Err(ParseError::MissingArgument { command, argument }),
    };
    if value.chars().count() > MAX_ID_LEN {
        return Err(invalid("longer than 128 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid("contains control characters"));
    }
    // A second '>' made AgustinSRG reject the whole message; inner whitespace means the
    // message was not meant for us. Neither can occur in a ferrocast stream code.
    if value.chars().any(|c| c.is_whitespace() || c == '>') {
        return Err(invalid("contains whitespace or '>'"));
    }
    Ok(value.to_owned())
}
