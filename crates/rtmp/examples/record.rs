//! Records every stream published to it, each into its own FLV file: the RTMP server used as
//! a library.
//!
//! ```sh
//! cargo run -p ferrocast-rtmp --example record -- 127.0.0.1:1935 ./recordings
//! ffmpeg -re -i in.mp4 -c copy -f flv rtmp://127.0.0.1:1935/live/demo
//! ```
//!
//! `./recordings/live-demo.flv` then plays in ffplay or VLC. The file is written by a task of
//! its own; when the disk falls behind, the channel to that task fills, the handler reports
//! not ready, and the server stops reading the publisher until there is room again.

// A command-line example talks to its user on the terminal, not through a log.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use bytes::Bytes;
use ferrocast_rtmp::flv_mux::FlvMuxer;
use ferrocast_rtmp::ingest::IngestOutput;
use ferrocast_rtmp::server::Server;
use ferrocast_rtmp::server::handler::{Accepted, ClientHandler, NewClient, Refused};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// Batches of FLV pieces queued for the writer task before the publisher is held back.
const QUEUE: usize = 32;

/// One publisher's recording: frames become FLV pieces, pieces go to the writer task.
struct Recorder {
    mux: FlvMuxer,
    /// Pieces not handed to the writer yet.
    batch: Vec<Bytes>,
    writer: PollSender<Vec<Bytes>>,
}

impl ClientHandler for Recorder {
    fn data_available(&mut self, data: IngestOutput) {
        match data {
            // One session for the whole recording: timestamps continue across re-announces.
            IngestOutput::Announce(info) => self.mux.tracks(Arc::from(info), 1),
            IngestOutput::Frame(frame) => {
                self.mux.frame(&frame);
            }
        }
        self.batch.append(&mut self.mux.take());
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.batch.is_empty() {
            return Poll::Ready(());
        }
        match self.writer.poll_reserve(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => {
                let _ = self.writer.send_item(std::mem::take(&mut self.batch));
                Poll::Ready(())
            }
            // The writer failed and said why; drop what comes until the client leaves.
            Poll::Ready(Err(_)) => {
                self.batch.clear();
                Poll::Ready(())
            }
        }
    }

    fn delete_stream(&mut self) {
        self.finish();
    }

    fn connection_closed(&mut self) {
        self.finish();
    }
}

impl Recorder {
    /// Hands the last pieces to the writer, which closes the file once the channel ends.
    fn finish(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        if let Some(sender) = self.writer.get_ref().cloned() {
            // The queue may be full: wait for room off the connection's task.
            tokio::spawn(async move {
                let _ = sender.send(batch).await;
            });
        }
        self.writer.close();
    }
}

/// Writes batches to `path` until the recorder is dropped.
async fn write_file(path: PathBuf, mut batches: mpsc::Receiver<Vec<Bytes>>) {
    let mut file = match tokio::fs::File::create(&path).await {
        Ok(f) => f,
        Err(e) => return eprintln!("cannot create {}: {e}", path.display()),
    };
    let mut bytes = 0usize;
    while let Some(batch) = batches.recv().await {
        for piece in batch {
            if let Err(e) = file.write_all(&piece).await {
                return eprintln!("cannot write {}: {e}", path.display());
            }
            bytes += piece.len();
        }
    }
    let _ = file.flush().await;
    println!("recorded {} ({bytes} bytes)", path.display());
}

/// A file name made of `parts` with anything but `[A-Za-z0-9_-]` replaced.
fn file_name(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| {
            p.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
        + ".flv"
}

fn recorder(dir: &Path, new: &NewClient) -> Recorder {
    let (tx, rx) = mpsc::channel(QUEUE);
    let path = dir.join(file_name(&[&new.app, &new.stream_key]));
    println!(
        "{} publishes {}/{}",
        new.client.peer(),
        new.app,
        new.stream_key
    );
    tokio::spawn(write_file(path, rx));
    Recorder {
        mux: FlvMuxer::new(),
        batch: Vec::new(),
        writer: PollSender::new(tx),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:1935".into());
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "recordings".into()));
    let bind = bind
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio::fs::create_dir_all(&dir).await?;
    let dir = Arc::new(dir);
    let server = Server::builder()
        .bind(bind)
        .handle_new_client(move |new: NewClient| {
            let dir = dir.clone();
            async move {
                if new.stream_key.is_empty() {
                    return Err(Refused::new("a stream key is needed"));
                }
                let recorder = recorder(&dir, &new);
                // Recording is the consumer: it wants the data at once.
                new.client.demand();
                Ok(Accepted::new(recorder))
            }
        })
        .start()
        .await?;
    println!("recording RTMP on port {}", server.port());
    tokio::signal::ctrl_c().await?;
    server.stop().await
}
