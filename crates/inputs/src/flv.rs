//! FLV tags (RTMP play, ffmpeg's FLV output) to tracks and frames, through the RTMP ingest
//! mapper so tracks are announced exactly as for an RTMP publisher.

use crate::drivers::InputError;
use crate::source::Emitter;
use bytes::Bytes;
use rtmp::amf0::Amf0Value;
use rtmp::flv_stream::FlvIngest;
use rtmp::ingest::IngestOutput;

/// One source's FLV mapping.
#[derive(Debug, Default)]
pub(crate) struct FlvFeed {
    flv: FlvIngest,
    out: Vec<IngestOutput>,
}

impl FlvFeed {
    /// `onMetaData`: which tracks to wait for.
    pub(crate) async fn metadata(
        &mut self,
        meta: &Amf0Value,
        out: &Emitter,
    ) -> Result<(), InputError> {
        self.flv.ingest().metadata(meta, &mut self.out);
        self.flush(out).await
    }

    /// One video tag body.
    pub(crate) async fn video(
        &mut self,
        ms: u32,
        body: &Bytes,
        out: &Emitter,
    ) -> Result<(), InputError> {
        if body.is_empty() {
            // nginx-rtmp sends empty audio and video messages when a player starts; they carry
            // nothing (not even a codec id) and are not tags an encoder would write.
            return Ok(());
        }
        let r = self.flv.ingest().video(ms, body, &mut self.out);
        self.flush(out).await?;
        r.map_err(|e| InputError::Source(e.to_string()))
    }

    /// One audio tag body.
    pub(crate) async fn audio(
        &mut self,
        ms: u32,
        body: &Bytes,
        out: &Emitter,
    ) -> Result<(), InputError> {
        if body.is_empty() {
            return Ok(());
        }
        let r = self.flv.ingest().audio(ms, body, &mut self.out);
        self.flush(out).await?;
        r.map_err(|e| InputError::Source(e.to_string()))
    }

    /// Bytes of an FLV file or stream, in any split.
    pub(crate) async fn bytes(&mut self, data: &[u8], out: &Emitter) -> Result<(), InputError> {
        self.flv.push(data);
        loop {
            let r = self.flv.next(&mut self.out, |_, ms| Some(ms));
            self.flush(out).await?;
            match r {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return Err(InputError::Source(format!("FLV: {e}"))),
            }
        }
    }

    async fn flush(&mut self, out: &Emitter) -> Result<(), InputError> {
        for o in self.out.drain(..) {
            match o {
                IngestOutput::Announce(info) => out.tracks(*info).await?,
                IngestOutput::Frame(f) => out.frame(f).await?,
            }
        }
        Ok(())
    }
}
