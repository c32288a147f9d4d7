//! Record timestamps as the original showed them to clients: Python's `str(datetime)`,
//! `YYYY-MM-DD HH:MM:SS.ffffff` (UTC). Presentation only; the core keeps microseconds.

/// Length of a formatted timestamp (for years 0 to 9999).
pub const TIMESTAMP_LEN: usize = 26;

/// Formats microseconds since the epoch as the original's `YYYY-MM-DD HH:MM:SS.ffffff` (UTC),
/// into a stack buffer, without allocating (it runs three times per record shown). Years outside
/// 0..=9999 are clamped.
pub fn format_micros_into(us: i64, buf: &mut [u8; TIMESTAMP_LEN]) -> &[u8] {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let y = y.clamp(0, 9999) as u32;
    // Two digits per step from a table: half the divisions of digit-by-digit (this runs for
    // every record shown, three times).
    let mut pair = |at: usize, v: u32| {
        let i = 2 * v as usize;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[i..i + 2]);
    };
    let (rem, frac) = (rem as u32, frac as u32);
    pair(0, y / 100);
    pair(2, y % 100);
    pair(5, m);
    pair(8, d);
    pair(11, rem / 3600);
    pair(14, (rem / 60) % 60);
    pair(17, rem % 60);
    pair(20, frac / 10_000);
    pair(22, (frac / 100) % 100);
    pair(24, frac % 100);
    for (i, c) in [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':'), (19, b'.')] {
        buf[i] = c;
    }
    &buf[..]
}

/// "00" to "99".
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); H. Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format_micros(us: i64) -> String {
        String::from_utf8(format_micros_into(us, &mut [0; TIMESTAMP_LEN]).to_vec()).unwrap()
    }

    #[test]
    fn formats_like_python_str_of_datetime() {
        assert_eq!(format_micros(0), "1970-01-01 00:00:00.000000");
        // 2026-11-23 22:27:44.661887 UTC, the spec's transcript.
        assert_eq!(format_micros(1_795_472_864_661_887), "2026-11-23 22:27:44.661887");
        assert_eq!(format_micros(951_782_400_000_001), "2000-02-29 00:00:00.000001");
    }
}
