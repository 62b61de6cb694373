use crate::*;
use mp4_atom::{Any, Decode, Mdat, TrunSamples};

const AVCC_720P: &[u8] = include_bytes!("../../../testdata/h264-1280x720-high.avcc");
const AVCC_240P: &[u8] = include_bytes!("../../../testdata/h264-320x240-baseline.avcc");
const ASC: &[u8] = include_bytes!("../../../testdata/aac-48k-stereo.asc");

fn video_track(record: &'static [u8]) -> TrackInfo {
    TrackInfo {
        track_id: 1,
        timescale: 90_000,
        codec: TrackCodec::Avc(AvcConfig::parse(Bytes::from_static(record)).unwrap()),
    }
}

fn audio_track() -> TrackInfo {
    TrackInfo {
        track_id: 2,
        timescale: 48_000,
        codec: TrackCodec::Aac(AacConfig::parse(Bytes::from_static(ASC)).unwrap()),
    }
}

/// Every top-level box of `data`, decoded by mp4-atom (an independent reader).
fn boxes(data: &[u8]) -> Vec<Any> {
    let mut buf = data;
    let mut out = Vec::new();
    while !buf.is_empty() {
        out.push(Any::decode(&mut buf).expect("mp4-atom decodes every box"));
    }
    out
}

#[test]
fn video_init_segment_parses_back() {
    let track = video_track(AVCC_720P);
    let init = init_segment(&track).unwrap();
    let b = boxes(&init);
    assert_eq!(b.len(), 2);
    let Any::Ftyp(ftyp) = &b[0] else {
        panic!("ftyp first: {b:?}")
    };
    assert_eq!(ftyp.major_brand, b"iso6".into());
    let Any::Moov(moov) = &b[1] else {
        panic!("moov second")
    };
    assert_eq!(moov.trak.len(), 1);
    let trak = &moov.trak[0];
    assert_eq!(trak.tkhd.track_id, 1);
    assert_eq!(trak.tkhd.width.integer(), 1280);
    assert_eq!(trak.mdia.mdhd.timescale, 90_000);
    assert_eq!(trak.mdia.hdlr.handler, b"vide".into());
    assert!(trak.mdia.minf.vmhd.is_some());
    let Codec::Avc1(avc1) = &trak.mdia.minf.stbl.stsd.codecs[0] else {
        panic!("avc1 sample entry")
    };
    assert_eq!((avc1.visual.width, avc1.visual.height), (1280, 720));
    let cfg = AvcConfig::parse(Bytes::from_static(AVCC_720P)).unwrap();
    assert_eq!(avc1.avcc.avc_profile_indication, cfg.profile_idc);
    assert_eq!(avc1.avcc.avc_level_indication, cfg.level_idc);
    assert_eq!(avc1.avcc.length_size, cfg.nal_length_size);
    assert_eq!(avc1.avcc.sequence_parameter_sets[0], cfg.sps[0].to_vec());
    let trex = &moov.mvex.as_ref().unwrap().trex;
    assert_eq!(trex.len(), 1);
    assert_eq!(trex[0].track_id, 1);
    assert_eq!(trex[0].default_sample_description_index, 1);
}

#[test]
fn audio_init_segment_parses_back() {
    let init = init_segment(&audio_track()).unwrap();
    let b = boxes(&init);
    let Any::Moov(moov) = &b[1] else {
        panic!("moov")
    };
    let trak = &moov.trak[0];
    assert_eq!(trak.mdia.hdlr.handler, b"soun".into());
    assert_eq!(trak.mdia.mdhd.timescale, 48_000);
    assert!(trak.mdia.minf.smhd.is_some());
    let Codec::Mp4a(mp4a) = &trak.mdia.minf.stbl.stsd.codecs[0] else {
        panic!("mp4a sample entry")
    };
    assert_eq!(mp4a.audio.channel_count, 2);
    assert_eq!(mp4a.audio.sample_rate.integer(), 48_000);
    let ds = mp4a.esds.es_desc.dec_config.dec_specific.as_ref().unwrap();
    assert_eq!(mp4a.esds.es_desc.dec_config.object_type_indication, 0x40);
    assert_eq!(ds.raw, ASC);
    assert_eq!((ds.profile, ds.chan_conf), (2, 2));
}

fn sample(n: u8, sync: bool, duration: u32, cts: i32) -> Sample {
    Sample {
        duration,
        cts_offset: cts,
        sync,
        data: Bytes::from(vec![n; 10 + usize::from(n)]),
    }
}

#[test]
fn media_segment_parses_back_with_offsets_flags_and_payload() {
    let samples = vec![
        sample(0, true, 3000, 6000),
        sample(1, false, 3000, -3000),
        sample(2, false, 3003, 0),
    ];
    let seg = media_segment(1, 7, 123_456_789_012, &samples).unwrap();
    let b = boxes(&seg);
    assert_eq!(b.len(), 3);
    let Any::Styp(styp) = &b[0] else {
        panic!("styp first")
    };
    assert_eq!(styp.major_brand, b"msdh".into());
    let Any::Moof(moof) = &b[1] else {
        panic!("moof second")
    };
    let Any::Mdat(Mdat { data }) = &b[2] else {
        panic!("mdat third")
    };
    assert_eq!(moof.mfhd.sequence_number, 7);
    let traf = &moof.traf[0];
    assert_eq!(traf.tfhd.track_id, 1);
    assert!(traf.tfhd.default_base_is_moof);
    assert_eq!(
        traf.tfdt.as_ref().unwrap().base_media_decode_time,
        123_456_789_012
    );
    let trun = &traf.trun[0];
    let TrunSamples::Explicit(entries) = &trun.samples else {
        panic!("explicit entries")
    };
    assert_eq!(entries.len(), 3);
    let durations: Vec<u32> = entries.iter().map(|e| e.duration.unwrap()).collect();
    assert_eq!(durations, [3000, 3000, 3003]);
    let cts: Vec<i64> = entries.iter().map(|e| e.cts.unwrap()).collect();
    assert_eq!(cts, [6000, -3000, 0]);
    let flags: Vec<u32> = entries.iter().map(|e| e.flags.unwrap()).collect();
    assert_eq!(
        flags,
        [
            SYNC_SAMPLE_FLAGS,
            NON_SYNC_SAMPLE_FLAGS,
            NON_SYNC_SAMPLE_FLAGS
        ]
    );
    // data_offset points from the moof's first byte to the first payload byte.
    let moof_start = seg.len() - data.len() - 8 - {
        let mut m = Vec::new();
        moof.encode(&mut m).unwrap();
        m.len()
    };
    let offset = trun.data_offset.unwrap() as usize;
    assert_eq!(&seg[moof_start + offset..], data.as_slice());
    let sizes: Vec<u32> = entries.iter().map(|e| e.size.unwrap()).collect();
    assert_eq!(sizes, [10, 11, 12]);
    let expected: Vec<u8> = samples.iter().flat_map(|s| s.data.to_vec()).collect();
    assert_eq!(data, &expected);
}

#[test]
fn empty_segment_is_an_error() {
    assert!(matches!(media_segment(1, 1, 0, &[]), Err(Fmp4Error::Empty)));
}

#[test]
fn baseline_record_round_trips() {
    let track = video_track(AVCC_240P);
    let b = boxes(&init_segment(&track).unwrap());
    let Any::Moov(moov) = &b[1] else { panic!() };
    let Codec::Avc1(avc1) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
        panic!()
    };
    assert_eq!((avc1.visual.width, avc1.visual.height), (320, 240));
}

/// ffprobe reads an init segment followed by one media segment as a playable file.
#[test]
#[allow(clippy::print_stderr)]
fn ffprobe_reads_init_plus_segment() {
    use std::process::Command;
    if Command::new("ffprobe").arg("-version").output().is_err() {
        eprintln!("note: ffprobe not on PATH; skipping the external check");
        return;
    }
    let mut file = init_segment(&audio_track()).unwrap().to_vec();
    // Silent AAC-LC stereo frames are not needed: ffprobe only reads the boxes here.
    let samples: Vec<Sample> = (0..10).map(|i| sample(i, true, 1024, 0)).collect();
    file.extend_from_slice(&media_segment(2, 1, 0, &samples).unwrap());
    let path = std::env::temp_dir().join(format!("ferrocast-fmp4-{}.mp4", std::process::id()));
    std::fs::write(&path, &file).unwrap();
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_packets",
            "-show_streams",
            "-of",
            "compact",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("codec_name=aac"), "{stdout}");
    assert!(stdout.contains("nb_read_packets=10"), "{stdout}");
}

#[test]
fn a_movie_of_two_tracks_has_both_traks_and_each_run_points_at_its_own_samples() {
    let header = movie_header(&[video_track(AVCC_240P), audio_track()]).unwrap();
    let b = boxes(&header);
    let Any::Moov(moov) = &b[1] else {
        panic!("moov second")
    };
    assert_eq!(moov.trak.len(), 2);
    let trex: Vec<u32> = moov
        .mvex
        .as_ref()
        .unwrap()
        .trex
        .iter()
        .map(|t| t.track_id)
        .collect();
    assert_eq!(trex, [1, 2]);
    assert_eq!(moov.mvhd.next_track_id, 3);
    assert!(matches!(movie_header(&[]), Err(Fmp4Error::Invalid(_))));

    let video = [sample(1, true, 3000, 0), sample(2, false, 3000, 0)];
    let audio = [sample(7, true, 1920, 0)];
    let runs = [
        TrackRun {
            track_id: 1,
            base_decode_time: 0,
            samples: &video,
        },
        TrackRun {
            track_id: 2,
            base_decode_time: 5,
            samples: &[],
        },
        TrackRun {
            track_id: 2,
            base_decode_time: 900,
            samples: &audio,
        },
    ];
    let frag = movie_fragment(3, &runs).unwrap();
    let b = boxes(&frag);
    let Any::Moof(moof) = &b[0] else {
        panic!("moof first")
    };
    // The empty run is left out.
    assert_eq!(moof.traf.len(), 2);
    for (traf, expected) in moof.traf.iter().zip([&video[..], &audio[..]]) {
        let offset = traf.trun[0].data_offset.unwrap() as usize;
        let len: usize = expected.iter().map(|s| s.data.len()).sum();
        let want: Vec<u8> = expected.iter().flat_map(|s| s.data.to_vec()).collect();
        assert_eq!(&frag[offset..offset + len], want.as_slice());
    }
    assert_eq!(
        moof.traf[1].tfdt.as_ref().unwrap().base_media_decode_time,
        900
    );
    assert!(matches!(
        movie_fragment(1, &runs[1..2]),
        Err(Fmp4Error::Empty)
    ));
}

#[test]
fn one_track_comes_out_of_a_muxed_movie_whole() {
    let header = movie_header(&[video_track(AVCC_240P), audio_track()]).unwrap();
    let video_init = track_header(&header, 1).unwrap();
    let b = boxes(&video_init);
    let Any::Moov(moov) = &b[1] else {
        panic!("moov second")
    };
    assert_eq!(moov.trak.len(), 1);
    assert_eq!(moov.trak[0].tkhd.track_id, 1);
    assert_eq!(moov.mvex.as_ref().unwrap().trex.len(), 1);
    assert!(track_header(&header, 9).is_err());
    assert!(track_header(&header[..20], 1).is_err());

    let video = [sample(1, true, 3000, 3000), sample(2, false, 3000, -3000)];
    let audio = [sample(7, true, 1920, 0), sample(8, true, 1920, 0)];
    let muxed = |seq, t| {
        movie_fragment(
            seq,
            &[
                TrackRun {
                    track_id: 1,
                    base_decode_time: t,
                    samples: &video,
                },
                TrackRun {
                    track_id: 2,
                    base_decode_time: t + 10,
                    samples: &audio,
                },
            ],
        )
        .unwrap()
    };
    // Two GOP fragments back to back, as a byte range of a recording holds them.
    let mut gop = BytesMut::new();
    gop.extend_from_slice(&muxed(1, 0));
    gop.extend_from_slice(&muxed(2, 6000));
    let gop = gop.freeze();
    for (id, expected, t) in [(1, &video[..], 0), (2, &audio[..], 10)] {
        let only = track_fragments(&gop, id).unwrap();
        let b = boxes(&only);
        assert_eq!(b.len(), 4, "two moof+mdat pairs of track {id}");
        let (Any::Moof(moof), Any::Mdat(Mdat { data })) = (&b[0], &b[1]) else {
            panic!("moof, mdat")
        };
        assert_eq!(moof.traf.len(), 1);
        assert_eq!(moof.traf[0].tfhd.track_id, id);
        assert_eq!(
            moof.traf[0].tfdt.as_ref().unwrap().base_media_decode_time,
            t
        );
        let want: Vec<u8> = expected.iter().flat_map(|s| s.data.to_vec()).collect();
        assert_eq!(data, &want);
        let TrunSamples::Explicit(entries) = &moof.traf[0].trun[0].samples else {
            panic!("explicit entries")
        };
        let flags: Vec<u32> = entries.iter().map(|e| e.flags.unwrap()).collect();
        let sync: Vec<u32> = expected
            .iter()
            .map(|s| {
                if s.sync {
                    SYNC_SAMPLE_FLAGS
                } else {
                    NON_SYNC_SAMPLE_FLAGS
                }
            })
            .collect();
        assert_eq!(flags, sync);
    }
    assert!(matches!(track_fragments(&gop, 3), Err(Fmp4Error::Empty)));
    // A range cut mid-box is refused, not read past.
    assert!(track_fragments(&gop.slice(..gop.len() - 3), 1).is_err());
}
