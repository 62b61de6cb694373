//! Sans-I/O fragmented MP4 (ISO/IEC 14496-12, CMAF-style) writer: one track per file.
//!
//! [`init_segment`] writes `ftyp` + `moov` (with `mvex`/`trex`, empty sample tables) for an
//! H.264, H.265, AV1, AAC or Opus track; [`media_segment`] writes `styp` + `moof` (`mfhd`, `traf` with `tfhd`,
//! `tfdt`, `trun`) + `mdat`, and [`media_fragment`] one `moof` + `mdat` chunk of a segment
//! that grows in parts (low-latency HLS and DASH), joined by [`segment_of`]. The box structures are encoded by `mp4-atom`; sample payloads are
//! appended to the `mdat` unchanged (H.264 stays AVCC with the config's NAL length size, AAC
//! stays raw access units). Nothing here does I/O or reads a clock.

mod timeline;

pub use timeline::write_segment_timeline;

use bytes::{BufMut, Bytes, BytesMut};
use media::{AacConfig, Av1Config, AvcConfig, HevcConfig, OpusConfig};
use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
use mp4_atom::{
    Atom, Audio, Av01, Av1c, Avc1, Avcc, Codec, Decode, Dinf, Dops, Dref, DrefEntry, Encode, Esds,
    FixedPoint, Ftyp, Hdlr, Hvc1, Hvcc, Mdhd, Mdia, Mfhd, Minf, Moof, Moov, Mp4a, Mvex, Mvhd, Opus,
    Smhd, Stbl, Stco, Stsc, Stsd, Stsz, Stts, Styp, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun,
    TrunEntry, Url, Visual, Vmhd,
};

/// `sample_flags` of a sync sample: depends on no other sample (ISO/IEC 14496-12 8.8.3.1).
pub const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: depends on others, `sample_is_non_sync_sample` set.
pub const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// Why a segment could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Fmp4Error {
    /// `mp4-atom` refused a box (a value out of its field's range).
    #[error("fmp4: cannot encode box: {0}")]
    Encode(#[from] mp4_atom::Error),
    /// The segment would exceed the 32-bit box sizes this writer uses.
    #[error("fmp4: segment of {0} bytes is too large")]
    TooLarge(usize),
    /// A media segment needs at least one sample.
    #[error("fmp4: media segment without samples")]
    Empty,
    /// A parameter does not fit the box field (e.g. a video wider than 65535).
    #[error("fmp4: {0}")]
    Invalid(&'static str),
}

/// The codec of a track with its decoder configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum TrackCodec {
    /// H.264, written as `avc1` + `avcC`.
    Avc(AvcConfig),
    /// H.265, written as `hvc1` + `hvcC` (parameter sets out of band, as CMAF and Apple want).
    Hevc(HevcConfig),
    /// AV1, written as `av01` + `av1C`.
    Av1(Av1Config),
    /// AAC, written as `mp4a` + `esds`.
    Aac(AacConfig),
    /// Opus, written as `Opus` + `dOps`.
    Opus(OpusConfig),
}

impl TrackCodec {
    /// Whether this is a video codec.
    pub fn is_video(&self) -> bool {
        matches!(
            self,
            TrackCodec::Avc(_) | TrackCodec::Hevc(_) | TrackCodec::Av1(_)
        )
    }
}

/// The `Visual` sample entry fields of a `width` x `height` picture.
fn visual(width: u32, height: u32) -> Result<(Visual, u16, u16), Fmp4Error> {
    let width = u16::try_from(width).map_err(|_| Fmp4Error::Invalid("width"))?;
    let height = u16::try_from(height).map_err(|_| Fmp4Error::Invalid("height"))?;
    let v = Visual {
        data_reference_index: 1,
        width,
        height,
        ..Visual::default()
    };
    Ok((v, width, height))
}

/// One track of an init segment.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackInfo {
    /// `track_ID` used in `tkhd`, `trex` and every `tfhd`.
    pub track_id: u32,
    /// Ticks per second of every time in this track's segments.
    pub timescale: u32,
    /// Codec and configuration.
    pub codec: TrackCodec,
}

/// One access unit of a media segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Decode duration in track timescale ticks.
    pub duration: u32,
    /// Presentation minus decode time, track ticks (signed: `trun` version 1).
    pub cts_offset: i32,
    /// A random access point (IDR picture; every AAC frame).
    pub sync: bool,
    /// The sample bytes, appended to `mdat` as they are.
    pub data: Bytes,
}

fn encode_into(atom: &impl Encode, out: &mut Vec<u8>) -> Result<(), Fmp4Error> {
    atom.encode(out)?;
    Ok(())
}

/// The `ftyp`+`moov` initialization segment of `track`.
pub fn init_segment(track: &TrackInfo) -> Result<Bytes, Fmp4Error> {
    movie_header(std::slice::from_ref(track))
}

/// The `ftyp`+`moov` of a fragmented movie holding every one of `tracks` (a recorded file with
/// its video and audio); the movie's timescale is the first track's.
pub fn movie_header(tracks: &[TrackInfo]) -> Result<Bytes, Fmp4Error> {
    let first = tracks
        .first()
        .ok_or(Fmp4Error::Invalid("a movie without tracks"))?;
    let ftyp = Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: vec![
            b"iso6".into(),
            b"cmfc".into(),
            b"dash".into(),
            b"mp41".into(),
        ],
    };
    let moov = Moov {
        mvhd: Mvhd {
            timescale: first.timescale,
            rate: FixedPoint::new(1, 0),
            volume: FixedPoint::new(1, 0),
            next_track_id: tracks
                .iter()
                .map(|t| t.track_id)
                .max()
                .unwrap_or(0)
                .saturating_add(1),
            ..Mvhd::default()
        },
        mvex: Some(Mvex {
            mehd: None,
            trex: tracks
                .iter()
                .map(|t| Trex {
                    track_id: t.track_id,
                    default_sample_description_index: 1,
                    ..Trex::default()
                })
                .collect(),
        }),
        trak: tracks.iter().map(trak).collect::<Result<_, _>>()?,
        ..Moov::default()
    };
    let mut out = Vec::with_capacity(1024 * tracks.len());
    encode_into(&ftyp, &mut out)?;
    encode_into(&moov, &mut out)?;
    Ok(Bytes::from(out))
}

/// The `trak` of one track: its sample entry and empty sample tables (samples are in fragments).
fn trak(track: &TrackInfo) -> Result<Trak, Fmp4Error> {
    let video = |codec: Codec, width: u16, height: u16| {
        let vmhd = Some(Vmhd::default());
        (
            b"vide",
            "ferrocast video",
            codec,
            width,
            height,
            0,
            vmhd,
            None,
        )
    };
    let (handler, name, codec, width, height, volume, vmhd, smhd) = match &track.codec {
        TrackCodec::Avc(avc) => {
            let (visual, width, height) = visual(avc.width, avc.height)?;
            let codec = Codec::Avc1(Avc1 {
                visual,
                avcc: avcc(avc)?,
                ..Avc1::default()
            });
            video(codec, width, height)
        }
        TrackCodec::Hevc(hevc) => {
            let (visual, width, height) = visual(hevc.width, hevc.height)?;
            let hvcc = Hvcc::decode_body(&mut &hevc.record[..])
                .map_err(|_| Fmp4Error::Invalid("HEVCDecoderConfigurationRecord"))?;
            let codec = Codec::Hvc1(Hvc1 {
                visual,
                hvcc,
                ..Hvc1::default()
            });
            video(codec, width, height)
        }
        TrackCodec::Av1(av1) => {
            let (visual, width, height) = visual(av1.width, av1.height)?;
            let av1c = Av1c::decode_body(&mut &av1.record[..])
                .map_err(|_| Fmp4Error::Invalid("AV1CodecConfigurationRecord"))?;
            let codec = Codec::Av01(Av01 {
                visual,
                av1c,
                ..Av01::default()
            });
            video(codec, width, height)
        }
        TrackCodec::Aac(aac) => {
            let codec = Codec::Mp4a(Mp4a {
                audio: Audio {
                    data_reference_index: 1,
                    channel_count: u16::from(aac.channel_config.max(1)),
                    sample_size: 16,
                    // The field is 16.16: rates above 65535 Hz are written as 0 (ISO/IEC
                    // 14496-12 12.2.3 says the esds config is authoritative then).
                    sample_rate: FixedPoint::new(u16::try_from(aac.sample_rate).unwrap_or(0), 0),
                },
                esds: esds(track.track_id, aac),
                btrt: None,
                taic: None,
            });
            (
                b"soun",
                "ferrocast audio",
                codec,
                0,
                0,
                1,
                None,
                Some(Smhd::default()),
            )
        }
        TrackCodec::Opus(opus) => {
            let dops = Dops::decode_body(&mut &opus.dops()[..])
                .map_err(|_| Fmp4Error::Invalid("Opus channel mapping"))?;
            let codec = Codec::Opus(Opus {
                // Opus in ISOBMFF 4.3.1: 48 kHz, 16-bit, the output channel count.
                audio: Audio {
                    data_reference_index: 1,
                    channel_count: u16::from(opus.channels.max(1)),
                    sample_size: 16,
                    sample_rate: FixedPoint::new(48_000, 0),
                },
                dops,
                btrt: None,
            });
            (
                b"soun",
                "ferrocast audio",
                codec,
                0,
                0,
                1,
                None,
                Some(Smhd::default()),
            )
        }
    };
    let trak = Trak {
        tkhd: Tkhd {
            track_id: track.track_id,
            enabled: true,
            in_movie: true,
            volume: FixedPoint::new(volume, 0),
            width: FixedPoint::new(width, 0),
            height: FixedPoint::new(height, 0),
            ..Tkhd::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: track.timescale,
                language: "und".into(),
                ..Mdhd::default()
            },
            hdlr: Hdlr {
                handler: handler.into(),
                name: name.into(),
            },
            minf: Minf {
                vmhd,
                smhd,
                dinf: Dinf {
                    dref: Dref {
                        entries: vec![DrefEntry::Url(Url::default())],
                    },
                },
                stbl: Stbl {
                    stsd: Stsd {
                        codecs: vec![codec],
                    },
                    stts: Stts::default(),
                    stsc: Stsc::default(),
                    stsz: Stsz::default(),
                    stco: Some(Stco::default()),
                    ..Stbl::default()
                },
                ..Minf::default()
            },
        },
        ..Trak::default()
    };
    Ok(trak)
}

/// The `avcC` of `avc`: the publisher's record as it is when `mp4-atom` can read it (keeps the
/// High-profile extension), else rebuilt from the parsed fields.
fn avcc(avc: &AvcConfig) -> Result<Avcc, Fmp4Error> {
    let mut record: &[u8] = &avc.record;
    if let Ok(parsed) = Avcc::decode_body(&mut record)
        && parsed.length_size == avc.nal_length_size
    {
        return Ok(parsed);
    }
    if avc.sps.is_empty() || avc.pps.is_empty() {
        return Err(Fmp4Error::Invalid("H.264 config without SPS/PPS"));
    }
    Ok(Avcc {
        configuration_version: 1,
        avc_profile_indication: avc.profile_idc,
        profile_compatibility: avc.constraint_flags,
        avc_level_indication: avc.level_idc,
        length_size: avc.nal_length_size,
        sequence_parameter_sets: avc.sps.iter().map(|s| s.to_vec()).collect(),
        picture_parameter_sets: avc.pps.iter().map(|s| s.to_vec()).collect(),
        ext: None,
    })
}

fn esds(track_id: u32, aac: &AacConfig) -> Esds {
    Esds {
        es_desc: EsDescriptor {
            es_id: u16::try_from(track_id).unwrap_or(0),
            dec_config: DecoderConfig {
                // 0x40: MPEG-4 audio (ISO/IEC 14496-1 table 5); stream type 5: audio.
                object_type_indication: 0x40,
                stream_type: 5,
                up_stream: 0,
                buffer_size_db: Default::default(),
                max_bitrate: 0,
                avg_bitrate: 0,
                dec_specific: Some(DecoderSpecific {
                    profile: aac.object_type,
                    freq_index: aac.sampling_frequency_index,
                    chan_conf: aac.channel_config,
                    raw: aac.asc.to_vec(),
                }),
            },
            sl_config: SLConfig {},
            ..EsDescriptor::default()
        },
    }
}

/// A `styp`+`moof`+`mdat` media segment holding `samples` of track `track_id`, the first
/// decoded at `base_decode_time` (track ticks). `sequence_number` goes to `mfhd`.
pub fn media_segment(
    track_id: u32,
    sequence_number: u32,
    base_decode_time: u64,
    samples: &[Sample],
) -> Result<Bytes, Fmp4Error> {
    let fragment = media_fragment(track_id, sequence_number, base_decode_time, samples)?;
    Ok(segment_of(&[fragment]))
}

/// The `styp` that opens every media segment.
pub fn styp() -> Bytes {
    let styp = Styp {
        major_brand: b"msdh".into(),
        minor_version: 0,
        compatible_brands: vec![b"msdh".into(), b"msix".into()],
    };
    let mut head = Vec::with_capacity(32);
    // A fixed box of four-character codes always encodes.
    let _ = encode_into(&styp, &mut head);
    Bytes::from(head)
}

/// A media segment made of CMAF chunks ([`media_fragment`]s, in order) behind one `styp`.
pub fn segment_of(fragments: &[Bytes]) -> Bytes {
    let styp = styp();
    let len = styp.len() + fragments.iter().map(Bytes::len).sum::<usize>();
    let mut out = BytesMut::with_capacity(len);
    out.extend_from_slice(&styp);
    for f in fragments {
        out.extend_from_slice(f);
    }
    out.freeze()
}

/// A `moof`+`mdat` fragment (a CMAF chunk, an LL-HLS part) holding `samples` of track
/// `track_id`, the first decoded at `base_decode_time` (track ticks).
pub fn media_fragment(
    track_id: u32,
    sequence_number: u32,
    base_decode_time: u64,
    samples: &[Sample],
) -> Result<Bytes, Fmp4Error> {
    movie_fragment(
        sequence_number,
        &[TrackRun {
            track_id,
            base_decode_time,
            samples,
        }],
    )
}

/// The samples of one track in a [`movie_fragment`].
#[derive(Clone, Copy, Debug)]
pub struct TrackRun<'a> {
    /// The track's `track_ID`.
    pub track_id: u32,
    /// Decode time of the first sample, track ticks.
    pub base_decode_time: u64,
    /// The samples, in decode order.
    pub samples: &'a [Sample],
}

/// A `moof` with a `traf` per run and one `mdat` holding the runs' samples one run after the
/// other, as a muxed fragmented MP4 file (or ffmpeg's `frag_keyframe`) has them. Runs without
/// samples are left out; at least one must have some.
pub fn movie_fragment(sequence_number: u32, runs: &[TrackRun<'_>]) -> Result<Bytes, Fmp4Error> {
    let mut out = BytesMut::new();
    movie_fragment_into(sequence_number, runs, &mut out)?;
    Ok(out.freeze())
}

/// [`movie_fragment`] appended to `out`, which a caller writing many fragments (a recording)
/// keeps, so each sample is copied once. Nothing is appended on error.
pub fn movie_fragment_into(
    sequence_number: u32,
    runs: &[TrackRun<'_>],
    out: &mut BytesMut,
) -> Result<(), Fmp4Error> {
    let runs: Vec<&TrackRun<'_>> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    if runs.is_empty() {
        return Err(Fmp4Error::Empty);
    }
    let mut trafs = Vec::with_capacity(runs.len());
    let mut payloads = Vec::with_capacity(runs.len());
    for run in &runs {
        let entries = run
            .samples
            .iter()
            .map(|s| {
                Ok(TrunEntry {
                    duration: Some(s.duration),
                    size: Some(
                        u32::try_from(s.data.len())
                            .map_err(|_| Fmp4Error::TooLarge(s.data.len()))?,
                    ),
                    flags: Some(if s.sync {
                        SYNC_SAMPLE_FLAGS
                    } else {
                        NON_SYNC_SAMPLE_FLAGS
                    }),
                    cts: Some(i64::from(s.cts_offset)),
                })
            })
            .collect::<Result<Vec<_>, Fmp4Error>>()?;
        payloads.push(run.samples.iter().map(|s| s.data.len()).sum::<usize>());
        trafs.push(Traf {
            tfhd: Tfhd {
                track_id: run.track_id,
                default_base_is_moof: true,
                ..Tfhd::default()
            },
            tfdt: Some(Tfdt {
                base_media_decode_time: run.base_decode_time,
            }),
            trun: vec![Trun {
                data_offset: Some(0),
                samples: entries.into(),
            }],
            ..Traf::default()
        });
    }
    let mut moof = Moof {
        mfhd: Mfhd { sequence_number },
        traf: trafs,
    };
    // Each data offset (moof start to the run's first byte in mdat) depends on the moof's own
    // size, which does not depend on the offsets' values: encode once to measure.
    let sample_count: usize = runs.iter().map(|r| r.samples.len()).sum();
    let mut probe = Vec::with_capacity(32 + runs.len() * 64 + sample_count * 16);
    encode_into(&moof, &mut probe)?;
    let mut offset = probe.len() + 8;
    for (traf, payload) in moof.traf.iter_mut().zip(&payloads) {
        if let Some(trun) = traf.trun.get_mut(0) {
            trun.data_offset =
                Some(i32::try_from(offset).map_err(|_| Fmp4Error::TooLarge(offset))?);
        }
        offset += payload;
    }
    let mut head = Vec::with_capacity(probe.len());
    encode_into(&moof, &mut head)?;
    debug_assert_eq!(head.len(), probe.len());
    let payload: usize = payloads.iter().sum();
    let mdat_size = payload + 8;
    let mdat_size32 = u32::try_from(mdat_size).map_err(|_| Fmp4Error::TooLarge(mdat_size))?;
    out.reserve(head.len() + mdat_size);
    out.extend_from_slice(&head);
    out.put_u32(mdat_size32);
    out.extend_from_slice(b"mdat");
    for run in &runs {
        for s in run.samples {
            out.extend_from_slice(&s.data);
        }
    }
    Ok(())
}

/// The type and size of the box at the head of `data`, when its header is whole and the box
/// fits in `data`.
fn box_at(data: &[u8]) -> Result<([u8; 4], usize), Fmp4Error> {
    let head = data
        .get(..8)
        .ok_or(Fmp4Error::Invalid("a box header cut short"))?;
    let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let kind = [head[4], head[5], head[6], head[7]];
    if size < 8 || size > data.len() {
        // 0 (to the end) and 1 (64-bit) sizes are not written here, and never in a GOP.
        return Err(Fmp4Error::Invalid("a box size outside the data"));
    }
    Ok((kind, size))
}

/// The initialization segment of one track of a movie's `ftyp`+`moov` (a muxed recording's
/// header), for a player that wants each track on its own (DASH).
pub fn track_header(header: &[u8], track_id: u32) -> Result<Bytes, Fmp4Error> {
    let mut ftyp = None;
    let mut moov = None;
    let mut at = 0;
    while at < header.len() {
        let (kind, size) = box_at(&header[at..])?;
        let mut body = &header[at..at + size];
        match &kind {
            b"ftyp" => ftyp = Some(Ftyp::decode(&mut body)?),
            b"moov" => moov = Some(Moov::decode(&mut body)?),
            _ => {}
        }
        at += size;
    }
    let (Some(ftyp), Some(mut moov)) = (ftyp, moov) else {
        return Err(Fmp4Error::Invalid("a header without ftyp and moov"));
    };
    moov.trak.retain(|t| t.tkhd.track_id == track_id);
    if moov.trak.is_empty() {
        return Err(Fmp4Error::Invalid("no such track"));
    }
    if let Some(mvex) = moov.mvex.as_mut() {
        mvex.trex.retain(|t| t.track_id == track_id);
    }
    let mut out = Vec::with_capacity(header.len());
    encode_into(&ftyp, &mut out)?;
    encode_into(&moov, &mut out)?;
    Ok(Bytes::from(out))
}

/// One track's share of `moof`+`mdat` fragments that carry several (a GOP of a muxed
/// recording), as fragments of that track alone; each sample's bytes are copied once, from
/// `data` into the result. Boxes other than `moof` and `mdat` are skipped.
pub fn track_fragments(data: &Bytes, track_id: u32) -> Result<Bytes, Fmp4Error> {
    let mut out = BytesMut::new();
    let mut at = 0;
    while at < data.len() {
        let (kind, size) = box_at(&data[at..])?;
        if &kind == b"moof" {
            let moof = Moof::decode(&mut &data[at..at + size])?;
            for traf in moof.traf.iter().filter(|t| t.tfhd.track_id == track_id) {
                let mut samples = Vec::new();
                for trun in &traf.trun {
                    // Offsets count from the moof (`default-base-is-moof`, as written here).
                    let mut pos = at
                        + usize::try_from(trun.data_offset.unwrap_or(0))
                            .map_err(|_| Fmp4Error::Invalid("a negative data offset"))?;
                    for e in trun.samples.iter() {
                        let len = e
                            .size
                            .ok_or(Fmp4Error::Invalid("a sample without a size"))?
                            as usize;
                        if pos + len > data.len() {
                            return Err(Fmp4Error::Invalid("a sample past the data"));
                        }
                        let flags = e.flags.unwrap_or(NON_SYNC_SAMPLE_FLAGS);
                        samples.push(Sample {
                            duration: e.duration.unwrap_or(0),
                            cts_offset: i32::try_from(e.cts.unwrap_or(0)).unwrap_or(0),
                            sync: flags & 0x0001_0000 == 0,
                            data: data.slice(pos..pos + len),
                        });
                        pos += len;
                    }
                }
                if samples.is_empty() {
                    continue;
                }
                let run = TrackRun {
                    track_id,
                    base_decode_time: traf.tfdt.as_ref().map_or(0, |t| t.base_media_decode_time),
                    samples: &samples,
                };
                movie_fragment_into(moof.mfhd.sequence_number, &[run], &mut out)?;
            }
        }
        at += size;
    }
    if out.is_empty() {
        return Err(Fmp4Error::Empty);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests;
