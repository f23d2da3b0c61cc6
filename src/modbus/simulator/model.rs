//! The electrical model of one simulated meter: a pure function of (meter parameters, time).
//!
//! Total active power is a sum of cosines (a daily shape with a night base and morning and
//! evening peaks, plus a few faster ripples), so its integral has a closed form and the energy
//! counters grow by exactly the integral of the power the meter reports. Reactive power is that
//! sum times a slowly varying Q/P ratio, expanded into another sum of cosines for the same
//! reason; apparent power is a linear combination of the two (see [`MeterModel::new`]).

use std::f64::consts::TAU;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DAY_S: f64 = 86_400.0;
/// The window of the sliding demand registers (the Acuvim default: 15 minutes).
pub const DEMAND_WINDOW_S: f64 = 900.0;
/// Below this angular frequency a product term is a constant (a period of ~200 years).
const STILL_RAD_PER_S: f64 = 1e-9;

/// `amplitude · cos(omega · t + phase)`, `omega` in rad/s (always > 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Term {
    pub amplitude: f64,
    pub omega: f64,
    pub phase: f64,
}

impl Term {
    fn period(amplitude: f64, period_s: f64, phase: f64) -> Term {
        Term { amplitude, omega: TAU / period_s, phase }
    }

    fn value(&self, t: f64) -> f64 {
        self.amplitude * (self.omega * t + self.phase).cos()
    }
}

/// `constant + Σ terms`: a signal whose antiderivative is known exactly.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrigSum {
    pub constant: f64,
    pub terms: Vec<Term>,
}

impl TrigSum {
    pub fn value(&self, t: f64) -> f64 {
        self.constant + self.terms.iter().map(|term| term.value(t)).sum::<f64>()
    }

    /// An antiderivative: `integral(b) - integral(a)` is the integral over `[a, b]`.
    pub fn integral(&self, t: f64) -> f64 {
        self.constant * t
            + self.terms.iter().map(|c| c.amplitude / c.omega * (c.omega * t + c.phase).sin()).sum::<f64>()
    }

    /// The lowest value the sum can possibly take (every cosine at −1 together).
    pub fn lower_bound(&self) -> f64 {
        self.constant - self.terms.iter().map(|c| c.amplitude.abs()).sum::<f64>()
    }

    /// The product as another sum, by `cos a · cos b = (cos(a − b) + cos(a + b)) / 2`.
    pub fn product(&self, other: &TrigSum) -> TrigSum {
        let mut out = TrigSum { constant: self.constant * other.constant, terms: Vec::new() };
        for (scale, terms) in [(other.constant, &self.terms), (self.constant, &other.terms)] {
            out.terms.extend(terms.iter().map(|c| Term { amplitude: c.amplitude * scale, ..*c }));
        }
        for a in &self.terms {
            for b in &other.terms {
                let amplitude = a.amplitude * b.amplitude / 2.0;
                out.push(amplitude, a.omega - b.omega, a.phase - b.phase);
                out.push(amplitude, a.omega + b.omega, a.phase + b.phase);
            }
        }
        out
    }

    fn push(&mut self, amplitude: f64, omega: f64, phase: f64) {
        if omega.abs() < STILL_RAD_PER_S {
            self.constant += amplitude * phase.cos();
        } else if omega < 0.0 {
            // cos(−x) = cos(x): keep every frequency positive so the antiderivative divides by ω > 0.
            self.terms.push(Term { amplitude, omega: -omega, phase: -phase });
        } else {
            self.terms.push(Term { amplitude, omega, phase });
        }
    }
}

/// What the meter measures at one instant, primary side, SI units (V, A, W, var, VA, Hz).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Reading {
    pub frequency: f64,
    pub v_ln: [f64; 3],
    pub v_ll: [f64; 3],
    pub current: [f64; 3],
    pub current_neutral: f64,
    pub p: [f64; 3],
    pub q: [f64; 3],
    pub s: [f64; 3],
    pub p_total: f64,
    pub q_total: f64,
    pub s_total: f64,
    pub pf: [f64; 3],
    pub pf_total: f64,
    /// Largest deviation from the mean over the mean, as a fraction.
    pub v_unbalance: f64,
    pub i_unbalance: f64,
    /// Mean P, Q, S over the last [`DEMAND_WINDOW_S`].
    pub demand: [f64; 3],
}

/// Per-meter parameters drawn once from the seed; evaluating them is a few dozen cosines.
#[derive(Clone, Debug)]
pub struct MeterModel {
    power: TrigSum,
    /// Q / P, between ~0.16 and ~0.52 (PF ~0.89–0.99).
    ratio: TrigSum,
    /// `power × ratio`, expanded, for the reactive-energy integral.
    reactive: TrigSum,
    /// S = `apparent.0 · P + apparent.1 · Q` (see `new`).
    apparent: (f64, f64),
    /// Long-term phase shares of P (sum 0) and the extra shares of Q (sum 0).
    share_bias: [f64; 3],
    q_share_bias: [f64; 3],
    share_wobble: Term,
    load_reference_w: f64,
    v_ln_nominal: f64,
    v_bias: [f64; 3],
    v_wobble: [Term; 3],
    v_daily: Term,
    f_nominal: f64,
    f_wobble: [Term; 2],
}

impl MeterModel {
    /// The model of meter `index` of a simulator seeded with `seed`. `peak_w` is the nominal
    /// daily peak of total active power, `v_ll_nominal` the primary line-to-line voltage.
    pub fn new(seed: u64, index: usize, peak_w: f64, v_ll_nominal: f64, frequency_hz: f64) -> MeterModel {
        let mut rng = StdRng::seed_from_u64(seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let scale = peak_w * rng.gen_range(0.6..1.0);
        let shift = rng.gen_range(-5400.0..5400.0);
        let day = TAU / DAY_S;
        // Daytime hump peaking ~13:30 plus a twice-daily harmonic peaking ~07:30 and ~19:30:
        // together a night base near 02:00 and two peaks (times shifted per meter).
        let mut terms = vec![
            Term { amplitude: 0.20 * rng.gen_range(0.8..1.2), omega: day, phase: -day * (13.5 * 3600.0 + shift) },
            Term {
                amplitude: 0.25 * rng.gen_range(0.8..1.2),
                omega: 2.0 * day,
                phase: -2.0 * day * (7.5 * 3600.0 + shift),
            },
            Term { amplitude: rng.gen_range(0.0..0.04), omega: 3.0 * day, phase: rng.gen_range(0.0..TAU) },
        ];
        // Minute-scale ripples so successive polls differ.
        for (amplitude, period_s) in [(0.02, 420.0), (0.02, 1380.0), (0.03, 4260.0)] {
            terms.push(Term::period(amplitude, period_s * rng.gen_range(0.8..1.2), rng.gen_range(0.0..TAU)));
        }
        let mut shape = TrigSum { constant: 0.0, terms };
        // Never below 3 % of the scale, whatever the phases: the meter only imports.
        shape.constant = 0.03 - shape.lower_bound();
        let power = TrigSum {
            constant: shape.constant * scale,
            terms: shape.terms.iter().map(|c| Term { amplitude: c.amplitude * scale, ..*c }).collect(),
        };

        let r_mean = rng.gen_range(0.28..0.40);
        let r_swing = rng.gen_range(0.05..0.12);
        let ratio = TrigSum {
            constant: r_mean,
            terms: vec![Term { amplitude: r_swing, omega: day, phase: rng.gen_range(0.0..TAU) }],
        };
        let reactive = power.product(&ratio);
        // S = P·sqrt(1 + r²) has no closed-form integral; the chord of sqrt(1 + r²) over the
        // range of r lies on or above the curve (it is convex), so S = P·(a + b·r) = a·P + b·Q
        // is integrable, never below sqrt(P² + Q²), and within ~0.5 % of it (a little distortion
        // power, as real loads have).
        let (r_lo, r_hi) = (r_mean - r_swing, r_mean + r_swing);
        let (s_lo, s_hi) = ((1.0 + r_lo * r_lo).sqrt(), (1.0 + r_hi * r_hi).sqrt());
        let slope = (s_hi - s_lo) / (r_hi - r_lo);
        let apparent = (s_lo - slope * r_lo, slope);

        let share_bias = zero_sum([rng.gen_range(-0.02..0.02), rng.gen_range(-0.02..0.02)]);
        let q_share_bias = zero_sum([rng.gen_range(-0.02..0.02), rng.gen_range(-0.02..0.02)]);
        let share_wobble = Term::period(0.01, 2220.0, rng.gen_range(0.0..TAU));
        let v_bias = [rng.gen_range(-0.008..0.008), rng.gen_range(-0.008..0.008), rng.gen_range(-0.008..0.008)];
        let v_wobble = [0, 1, 2].map(|_| Term::period(0.006, rng.gen_range(300.0..900.0), rng.gen_range(0.0..TAU)));
        let v_daily = Term { amplitude: 0.004, omega: day, phase: rng.gen_range(0.0..TAU) };
        let f_wobble = [
            Term::period(0.04, rng.gen_range(250.0..400.0), rng.gen_range(0.0..TAU)),
            Term::period(0.015, rng.gen_range(30.0..60.0), rng.gen_range(0.0..TAU)),
        ];
        MeterModel {
            power,
            ratio,
            reactive,
            apparent,
            share_bias,
            q_share_bias,
            share_wobble,
            load_reference_w: scale,
            v_ln_nominal: v_ll_nominal / 3f64.sqrt(),
            v_bias,
            v_wobble,
            v_daily,
            f_nominal: frequency_hz,
            f_wobble,
        }
    }

    /// Total active power in W at `t` (seconds since the model's origin).
    pub fn power_w(&self, t: f64) -> f64 {
        self.power.value(t)
    }

    /// Antiderivatives of total P, Q and S in Wh, varh, VAh: the energy counters up to a constant.
    pub fn energy(&self, t: f64) -> [f64; 3] {
        let p = self.power.integral(t) / 3600.0;
        let q = self.reactive.integral(t) / 3600.0;
        [p, q, self.apparent.0 * p + self.apparent.1 * q]
    }

    /// Total P, Q and S at `t`.
    pub fn totals(&self, t: f64) -> [f64; 3] {
        let p = self.power.value(t);
        let q = p * self.ratio.value(t);
        [p, q, self.apparent.0 * p + self.apparent.1 * q]
    }

    /// Everything the real-time block shows, primary side.
    pub fn reading(&self, t: f64) -> Reading {
        let [p_total, q_total, s_total] = self.totals(t);
        let mut r = Reading { p_total, q_total, s_total, pf_total: p_total / s_total, ..Reading::default() };
        let load = p_total / self.load_reference_w;
        let drift = self.v_daily.value(t) - 0.012 * load;
        for i in 0..3 {
            let wobble = Term { phase: self.share_wobble.phase + TAU * i as f64 / 3.0, ..self.share_wobble };
            let share = 1.0 / 3.0 + self.share_bias[i] + wobble.value(t);
            r.p[i] = p_total * share;
            r.q[i] = q_total * (share + self.q_share_bias[i]);
            r.v_ln[i] = self.v_ln_nominal * (1.0 + self.v_bias[i] + self.v_wobble[i].value(t) + drift);
        }
        // Per-phase S scaled so that they add up to the total, like the meter's arithmetic sum.
        let phase_s = [0, 1, 2].map(|i| r.p[i].hypot(r.q[i]));
        let phase_s_sum: f64 = phase_s.iter().sum();
        for (i, s) in phase_s.into_iter().enumerate() {
            r.s[i] = s * s_total / phase_s_sum;
            r.pf[i] = r.p[i] / r.s[i];
            r.current[i] = r.s[i] / r.v_ln[i];
            // Phasors 120° apart: |Va − Vb|² = Va² + Va·Vb + Vb².
            let (a, b) = (r.v_ln[i], r.v_ln[(i + 1) % 3]);
            r.v_ll[i] = (a * a + a * b + b * b).sqrt();
        }
        let [i1, i2, i3] = r.current;
        r.current_neutral = (i1 * i1 + i2 * i2 + i3 * i3 - i1 * i2 - i2 * i3 - i3 * i1).max(0.0).sqrt();
        r.v_unbalance = unbalance(&r.v_ln);
        r.i_unbalance = unbalance(&r.current);
        r.frequency = self.f_nominal + self.f_wobble.iter().map(|w| w.value(t)).sum::<f64>();
        let (now, before) = (self.energy(t), self.energy(t - DEMAND_WINDOW_S));
        r.demand = [0, 1, 2].map(|k| (now[k] - before[k]) * 3600.0 / DEMAND_WINDOW_S);
        r
    }
}

fn zero_sum([a, b]: [f64; 2]) -> [f64; 3] {
    [a, b, -a - b]
}

/// Largest deviation from the mean over the mean (the meter's unbalance registers).
pub fn unbalance(values: &[f64; 3]) -> f64 {
    let mean = values.iter().sum::<f64>() / 3.0;
    if mean <= 0.0 {
        return 0.0;
    }
    values.iter().map(|v| (v - mean).abs()).fold(0.0, f64::max) / mean
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Composite Simpson's rule with `n` (even) intervals.
    fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
        let h = (b - a) / n as f64;
        let inner: f64 = (1..n).map(|k| if k % 2 == 1 { 4.0 } else { 2.0 } * f(a + h * k as f64)).sum::<f64>();
        h / 3.0 * (f(a) + inner + f(b))
    }

    fn model(seed: u64) -> MeterModel {
        MeterModel::new(seed, 0, 100_000.0, 400.0, 50.0)
    }

    /// Around 2026 in seconds since 2024-01-01: where the simulator evaluates the models.
    const T0: f64 = 70_000_000.0;

    #[test]
    fn the_product_of_two_sums_is_their_pointwise_product() {
        let a = TrigSum { constant: 1.5, terms: vec![Term::period(0.5, 100.0, 0.3), Term::period(0.2, 37.0, 1.0)] };
        let b = TrigSum { constant: 0.4, terms: vec![Term::period(0.1, 100.0, 2.0), Term::period(0.3, 11.0, 0.0)] };
        let ab = a.product(&b);
        for k in 0..200 {
            let t = k as f64 * 1.7;
            assert!((ab.value(t) - a.value(t) * b.value(t)).abs() < 1e-12, "at {t}");
        }
        assert!(ab.terms.iter().all(|c| c.omega > 0.0), "equal frequencies fold into the constant");
    }

    #[test]
    fn energy_counters_are_the_exact_integral_of_the_reported_power() {
        let m = model(7);
        let (a, b) = (T0, T0 + 3.0 * 3600.0);
        let [p, q, s] = [0, 1, 2].map(|k| m.energy(b)[k] - m.energy(a)[k]);
        let numeric = |k: usize| simpson(|t| m.totals(t)[k], a, b, 3 * 3600 * 2) / 3600.0;
        assert!((p - numeric(0)).abs() < 1e-6 * p, "P: {p} vs {}", numeric(0));
        assert!((q - numeric(1)).abs() < 1e-6 * q, "Q: {q} vs {}", numeric(1));
        assert!((s - numeric(2)).abs() < 1e-6 * s, "S: {s} vs {}", numeric(2));
    }

    #[test]
    fn the_day_has_a_night_base_and_two_peaks() {
        let m = model(3);
        let hour = |h: f64| m.power_w(T0 - T0.rem_euclid(DAY_S) + h * 3600.0);
        let night = (0..6).map(|h| hour(h as f64)).fold(f64::MAX, f64::min);
        let morning = (6..10).map(|h| hour(h as f64)).fold(0.0, f64::max);
        let evening = (17..22).map(|h| hour(h as f64)).fold(0.0, f64::max);
        assert!(morning > 2.0 * night && evening > 2.0 * night, "night {night}, morning {morning}, evening {evening}");
    }

    #[test]
    fn lower_bound_is_reached_when_every_cosine_is_at_minus_one() {
        let s =
            TrigSum { constant: 1.0, terms: vec![Term { amplitude: 0.5, omega: 1.0, phase: std::f64::consts::PI }] };
        assert_eq!(s.lower_bound(), 0.5);
        assert!((s.value(0.0) - 0.5).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn readings_are_physically_consistent(seed in any::<u64>(), index in 0usize..50, dt in 0.0..(400.0 * DAY_S)) {
            let m = MeterModel::new(seed, index, 100_000.0, 400.0, 50.0);
            let t = T0 + dt;
            let r = m.reading(t);
            prop_assert!(r.p_total > 0.0);
            prop_assert!((0.85..=0.99).contains(&r.pf_total), "PF {}", r.pf_total);
            prop_assert!(r.s_total >= r.p_total.hypot(r.q_total) * (1.0 - 1e-12));
            prop_assert!((r.p.iter().sum::<f64>() - r.p_total).abs() < 1e-6 * r.p_total);
            prop_assert!((r.q.iter().sum::<f64>() - r.q_total).abs() < 1e-6 * r.q_total);
            prop_assert!((r.s.iter().sum::<f64>() - r.s_total).abs() < 1e-6 * r.s_total);
            for i in 0..3 {
                prop_assert!((220.0..240.0).contains(&r.v_ln[i]), "V{} {}", i + 1, r.v_ln[i]);
                prop_assert!((380.0..415.0).contains(&r.v_ll[i]), "V LL {}", r.v_ll[i]);
                prop_assert!((0.8..=1.0).contains(&r.pf[i]), "PF{} {}", i + 1, r.pf[i]);
                prop_assert!(r.current[i] > 0.0);
            }
            prop_assert!((49.9..50.1).contains(&r.frequency));
            prop_assert!(r.v_unbalance < 0.03 && r.i_unbalance < 0.2);
            prop_assert!(r.demand[0] > 0.0 && r.demand[0] < 1.2 * 100_000.0);
        }

        #[test]
        fn energy_grows_by_the_integral_over_any_interval(seed in any::<u64>(), start in 0.0..(400.0 * DAY_S), len in 1.0..7200.0) {
            let m = MeterModel::new(seed, 1, 50_000.0, 400.0, 60.0);
            let (a, b) = (T0 + start, T0 + start + len);
            let exact = m.energy(b)[0] - m.energy(a)[0];
            let numeric = simpson(|t| m.power_w(t), a, b, 2 * (len as usize + 1)) / 3600.0;
            prop_assert!((exact - numeric).abs() <= 1e-6 * numeric.max(1.0), "{exact} vs {numeric}");
        }
    }
}
