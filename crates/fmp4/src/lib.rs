//! Sans-I/O fragmented MP4 (ISO/IEC 14496-12, CMAF-style) writer: one track per file.
//!
//! [`init_segment`] writes `ftyp` + `moov` (with `mvex`/`trex`, empty sample tables) for an
//! H.264, H.265, AV1, AAC or Opus track; [`media_segment`] writes `styp` + `moof` (`mfhd`, `traf` with `tfhd`,
//! `tfdt`, `trun`) + `mdat`, and [`media_fragment`] one `moof` + `mdat` chunk of a segment
//! that grows in parts (low-latency HLS and DASH), joined by [`segment_of`]. The box structures are encoded by `mp4-atom`; sample payloads are
//! appended to the `mdat` unchanged (H.264 stays AVCC with the config's NAL length size, AAC
//! stays raw access units). Nothing here does I/O or reads a clock.

use bytes::{BufMut, Bytes, BytesMut};
use media::{AacConfig, Av1Config, AvcConfig, HevcConfig, OpusConfig};
use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
use mp4_atom::{
    Atom, Audio, Av01, Av1c, Avc1, Avcc, Codec, Dinf, Dops, Dref, DrefEntry, Encode, Esds,
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
    let moov = Moov {
        mvhd: Mvhd {
            timescale: track.timescale,
            rate: FixedPoint::new(1, 0),
            volume: FixedPoint::new(1, 0),
            next_track_id: track.track_id.saturating_add(1),
            ..Mvhd::default()
        },
        mvex: Some(Mvex {
            mehd: None,
            trex: vec![Trex {
                track_id: track.track_id,
                default_sample_description_index: 1,
                ..Trex::default()
            }],
        }),
        trak: vec![trak],
        ..Moov::default()
    };
    let mut out = Vec::with_capacity(1024);
    encode_into(&ftyp, &mut out)?;
    encode_into(&moov, &mut out)?;
    Ok(Bytes::from(out))
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
    if samples.is_empty() {
        return Err(Fmp4Error::Empty);
    }
    let payload: usize = samples.iter().map(|s| s.data.len()).sum();
    let entries = samples
        .iter()
        .map(|s| {
            Ok(TrunEntry {
                duration: Some(s.duration),
                size: Some(
                    u32::try_from(s.data.len()).map_err(|_| Fmp4Error::TooLarge(s.data.len()))?,
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
    let mut moof = Moof {
        mfhd: Mfhd { sequence_number },
        traf: vec![Traf {
            tfhd: Tfhd {
                track_id,
                default_base_is_moof: true,
                ..Tfhd::default()
            },
            tfdt: Some(Tfdt {
                base_media_decode_time: base_decode_time,
            }),
            trun: vec![Trun {
                data_offset: Some(0),
                samples: entries.into(),
            }],
            ..Traf::default()
        }],
    };
    // The data offset (moof start to the first mdat payload byte) depends on the moof's own
    // size, which does not depend on the offset's value: encode once to measure.
    let mut probe = Vec::with_capacity(32 + samples.len() * 16);
    encode_into(&moof, &mut probe)?;
    let offset = probe.len() + 8;
    if let Some(trun) = moof.traf.get_mut(0).and_then(|t| t.trun.get_mut(0)) {
        trun.data_offset = Some(i32::try_from(offset).map_err(|_| Fmp4Error::TooLarge(offset))?);
    }
    let mut head = Vec::with_capacity(probe.len());
    encode_into(&moof, &mut head)?;
    debug_assert_eq!(head.len(), probe.len());
    let mdat_size = payload + 8;
    let mdat_size32 = u32::try_from(mdat_size).map_err(|_| Fmp4Error::TooLarge(mdat_size))?;
    let mut out = BytesMut::with_capacity(head.len() + mdat_size);
    out.extend_from_slice(&head);
    out.put_u32(mdat_size32);
    out.extend_from_slice(b"mdat");
    for s in samples {
        out.extend_from_slice(&s.data);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests;
