// The loop of pdeforge.solvers._etdrk_strategies.FusedFluxSquareSteps.advance, compiled. The FFTs are ATen's
// (at::fft_rfft / at::fft_irfft); the complex multiply-adds between them are hand-written loops, one pass per stage
// and one for the update, into buffers allocated once per call (each ATen call on 50 x 129 modes costs 2-4 us, most
// of it dispatch and allocation). Each loop does the Python loop's arithmetic in its order, as ATen's vectorised
// kernels do it: (a + ib)(c + id) = (ac - bd) + i(ad + bc), acc + c x, n_1 + n_2, every product and sum rounded on
// its own (-ffp-contract=off: no FMA), so the numbers are the same (tested; the one exception: where ATen runs a
// row's last modes through its scalar code, which the compiler contracted to FMAs, a complex coefficient there
// rounds differently, ~1 ulp). A second nonlinear kind, 2D vorticity advection in Basdevant's form (the plan's
// optional tail; FusedVorticitySteps, solvers/_etdrk_strategies_ns.py), shares the stage and update loops: see
// `velocities`. Built on first use by _etdrk_native.py (torch.utils.cpp_extension).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/fft_irfft.h>
#include <ATen/ops/fft_irfftn.h>
#include <ATen/ops/fft_rfft.h>
#include <ATen/ops/fft_rfftn.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <vector>

namespace {

// ---- the loops. A complex array is read as interleaved (re, im) pairs of T (float for complex64, double for
// complex128); a coefficient row holds m values, broadcast over the `rows` rows (batch x ...) of a state.
#define ROW_LOOP inline __attribute__((always_inline))
// an AVX2 copy of the loops, picked when the library loads (the build itself targets any x86-64). No AVX-512 copy:
// GCC 12 vectorises (ac - bd, ad + bc) into vfmaddsub there even under -ffp-contract=off, which changes the bits.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTORISED __attribute__((target_clones("avx2", "default")))
#else
#define VECTORISED
#endif

template <typename T>  // (re, im) += c x at k, as ATen's addcmul (value 1): acc + (c x), each operation rounded
ROW_LOOP void add_times(T& re, T& im, const T* c, const T* x, int64_t k) {
  re = re + (c[k] * x[k] - c[k + 1] * x[k + 1]);
  im = im + (c[k] * x[k + 1] + c[k + 1] * x[k]);
}

// o = (p u, or u where P is false) + a_1 n_1 + ... + a_K n_K over a row of m values, in one pass (K <= 3)
template <typename T, bool P, int K>
ROW_LOOP void combine(T* __restrict__ o, const T* __restrict__ p, const T* __restrict__ u, const T* __restrict__ a1,
                      const T* __restrict__ n1, const T* __restrict__ a2, const T* __restrict__ n2,
                      const T* __restrict__ a3, const T* __restrict__ n3, int64_t m) {
  for (int64_t k = 0; k < 2 * m; k += 2) {
    T re = u[k], im = u[k + 1];
    if constexpr (P) {  // (a + ib)(c + id) = (ac - bd) + i(ad + bc)
      re = p[k] * u[k] - p[k + 1] * u[k + 1];
      im = p[k] * u[k + 1] + p[k + 1] * u[k];
    }
    if constexpr (K >= 1) add_times(re, im, a1, n1, k);
    if constexpr (K >= 2) add_times(re, im, a2, n2, k);
    if constexpr (K >= 3) add_times(re, im, a3, n3, k);
    o[k] = re;
    o[k + 1] = im;
  }
}

template <typename T>
struct Term {
  const T *a, *n;  // the coefficient row (a_ij, b_i) and N_j (or a sum of them), `rows` rows of m values
};

// out = p u + a_1 N_1 + a_2 N_2 + ... (p u: u itself where p is null), a batch row at a time (it stays in L1): a
// stage's value U_i, or the update (p = exp(z), the terms b_i and the sums of the N_i that share b_i). `sums`:
// (s, N) pairs, s = s + N, done first, in order (each weight's N_i1 + N_i2 + ..., accumulated into N_i1, ours;
// a stage has one weight, so no sum changes another weight's N).
template <typename T>
VECTORISED void multiply_add(T* __restrict__ out, const T* p, const T* u, const std::vector<Term<T>>& terms,
                             const std::vector<std::pair<T*, const T*>>& sums, int64_t rows, int64_t m) {
  for (int64_t r = 0, at = 0; r < rows; ++r, at += 2 * m) {
    for (const auto& [sum, n] : sums) {
      T* __restrict__ s = sum + at;
      const T* __restrict__ x = n + at;
      for (int64_t k = 0; k < 2 * m; ++k) s[k] = s[k] + x[k];
    }
    const T* t[6] = {};  // the first three terms (a, n), fused with the product
    for (size_t i = 0; i < std::min<size_t>(terms.size(), 3); ++i) {
      t[2 * i] = terms[i].a;
      t[2 * i + 1] = terms[i].n + at;
    }
    T* __restrict__ o = out + at;
    const T* x = u + at;
#define COMBINE(P, K) combine<T, P, K>(o, p, x, t[0], t[1], t[2], t[3], t[4], t[5], m)
    switch (std::min<size_t>(terms.size(), 3) + (p != nullptr ? 4 : 0)) {  // (p u or u) + the first three terms
      case 0: COMBINE(false, 0); break;
      case 1: COMBINE(false, 1); break;
      case 2: COMBINE(false, 2); break;
      case 3: COMBINE(false, 3); break;
      case 4: COMBINE(true, 0); break;
      case 5: COMBINE(true, 1); break;
      case 6: COMBINE(true, 2); break;
      default: COMBINE(true, 3);
    }
#undef COMBINE
    for (size_t i = 3; i < terms.size(); ++i) {  // any further terms, one pass each
      const T *__restrict__ a = terms[i].a, *__restrict__ n = terms[i].n + at;
      for (int64_t k = 0; k < 2 * m; k += 2) add_times(o[k], o[k + 1], a, n, k);
    }
  }
}

// The vorticity kind (2D incompressible advection in Basdevant's form, solvers/_equations.py): per stage, the
// stage's value U_i (as `combine`, never stored) times the two velocity symbols, (-u, v) = (d_y, d_x) lap^-1 U_i
// masked, in one pass; then the two inverse FFTs, the products -u v and (v + (-u))(v - (-u)) in one pass, their
// two forward FFTs, and N = s_1 F_1 + s_2 F_2 (+ f) in one pass. Each operation as the reference's ATen call
// rounds it: U s (a complex product), x y, (y + x)(y - x), s_1 F_1, then + s_2 F_2 (addcmul), then f + N.
template <typename T, bool P, int K>
ROW_LOOP void velocities(T* __restrict__ va, T* __restrict__ vb, const T* __restrict__ sa, const T* __restrict__ sb,
                         const T* __restrict__ p, const T* __restrict__ u, const T* __restrict__ a1,
                         const T* __restrict__ n1, const T* __restrict__ a2, const T* __restrict__ n2,
                         const T* __restrict__ a3, const T* __restrict__ n3, int64_t m) {
  for (int64_t k = 0; k < 2 * m; k += 2) {
    T re = u[k], im = u[k + 1];
    if constexpr (P) {
      re = p[k] * u[k] - p[k + 1] * u[k + 1];
      im = p[k] * u[k + 1] + p[k + 1] * u[k];
    }
    if constexpr (K >= 1) add_times(re, im, a1, n1, k);
    if constexpr (K >= 2) add_times(re, im, a2, n2, k);
    if constexpr (K >= 3) add_times(re, im, a3, n3, k);
    va[k] = re * sa[k] - im * sa[k + 1];
    va[k + 1] = re * sa[k + 1] + im * sa[k];
    vb[k] = re * sb[k] - im * sb[k + 1];
    vb[k + 1] = re * sb[k + 1] + im * sb[k];
  }
}

// va, vb = U_i sa, U_i sb (the velocity spectra), U_i = p u + a_1 n_1 + ... (at most three terms), a row at a time
template <typename T>
VECTORISED void stage_velocities(T* va, T* vb, const T* sa, const T* sb, const T* p, const T* u,
                                 const std::vector<Term<T>>& terms, int64_t rows, int64_t m) {
  for (int64_t r = 0, at = 0; r < rows; ++r, at += 2 * m) {
    const T* t[6] = {};
    for (size_t i = 0; i < terms.size(); ++i) {
      t[2 * i] = terms[i].a;
      t[2 * i + 1] = terms[i].n + at;
    }
#define VELOCITIES(P, K) velocities<T, P, K>(va + at, vb + at, sa, sb, p, u + at, t[0], t[1], t[2], t[3], t[4], t[5], m)
    switch (terms.size() + (p != nullptr ? 4 : 0)) {
      case 0: VELOCITIES(false, 0); break;
      case 1: VELOCITIES(false, 1); break;
      case 2: VELOCITIES(false, 2); break;
      case 3: VELOCITIES(false, 3); break;
      case 4: VELOCITIES(true, 0); break;
      case 5: VELOCITIES(true, 1); break;
      case 6: VELOCITIES(true, 2); break;
      default: VELOCITIES(true, 3);
    }
#undef VELOCITIES
  }
}

template <typename T>  // x, y = -u, v -> x y, (y + x)(y - x), over n reals, in place
VECTORISED void velocity_products(T* __restrict__ x, T* __restrict__ y, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    const T a = x[k], b = y[k];
    x[k] = a * b;
    y[k] = (b + a) * (b - a);
  }
}

// g1 = s1 g1 + s2 g2 (+ f), in place over a row of m values (g1, g2: the products' spectra in the fluxes' order)
template <typename T, bool F>
ROW_LOOP void flux_row(T* g1, const T* __restrict__ g2, const T* __restrict__ s1, const T* __restrict__ s2,
                       const T* __restrict__ f, int64_t m) {
  for (int64_t k = 0; k < 2 * m; k += 2) {
    T re = s1[k] * g1[k] - s1[k + 1] * g1[k + 1];
    T im = s1[k] * g1[k + 1] + s1[k + 1] * g1[k];
    add_times(re, im, s2, g2, k);
    if constexpr (F) {
      re = f[k] + re;
      im = f[k + 1] + im;
    }
    g1[k] = re;
    g1[k + 1] = im;
  }
}

template <typename T>  // N = s1 g1 + s2 g2 (+ f where f is not null), into g1, a batch row at a time
VECTORISED void flux_combination(T* g1, const T* g2, const T* s1, const T* s2, const T* f, int64_t rows, int64_t m) {
  for (int64_t r = 0, at = 0; r < rows; ++r, at += 2 * m) {
    if (f != nullptr)
      flux_row<T, true>(g1 + at, g2 + at, s1, s2, f, m);
    else
      flux_row<T, false>(g1 + at, g2 + at, s1, s2, f, m);
  }
}

template <typename T>  // x = x x, over n reals: the flux's square, in place
VECTORISED void square(T* x, int64_t n) {
  for (int64_t k = 0; k < n; ++k) x[k] = x[k] * x[k];
}

// a saved frame x (rows of n reals) copied to out's rows (`stride` apart) and, if `then_square`, squared in place
// for the next step's first stage: one pass instead of a strided copy_ and a square
template <typename T>
VECTORISED void save(T* x, T* out, int64_t stride, int64_t rows, int64_t n, bool then_square) {
  for (int64_t r = 0; r < rows; ++r) {
    T* __restrict__ o = out + r * stride;
    T* __restrict__ v = x + r * n;
    for (int64_t k = 0; k < n; ++k) o[k] = v[k];
    if (then_square)
      for (int64_t k = 0; k < n; ++k) v[k] = v[k] * v[k];
  }
}

// x (rows of n reals) = the squares of a saved frame's rows (`stride` apart), for the next step's first stage
template <typename T>
VECTORISED void load_squared(T* __restrict__ x, const T* __restrict__ frame, int64_t stride, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < n; ++k) x[r * n + k] = frame[r * stride + k] * frame[r * stride + k];
}

// ---- the plan: which coefficient row each loop reads (written by _etdrk_native.pack): n_slots, per slot the row of
// its propagator (-1: the state itself), the slot the update starts from (-1: E u_n), the row of E, n_stages, per
// stage: slot, write (unused here: each stage forms its own product), n_terms, (j, row) per term; n_groups, per
// group: row, n_stages, the stages; then, for the vorticity kind only, its rows (see Plan::vorticity).
struct Stage {
  int64_t slot;
  std::vector<std::pair<int64_t, int64_t>> terms;  // (j, the row of a_ij)
};

struct Plan {
  std::vector<int64_t> products;
  int64_t start = -1;  // the row the update's e u starts from
  std::vector<Stage> stages;
  std::vector<std::pair<int64_t, std::vector<int64_t>>> groups;  // (the row of b, its stages)
  std::vector<int64_t> shape, dims;
  // the vorticity kind (optional, after the groups): 1, the rows of the two velocity symbols, per flux (2): which
  // product (0: -u v, 1: v^2 - u^2) and the row of its symbol, then the row of the source (-1: none)
  bool vorticity = false;
  int64_t velocity[2] = {-1, -1}, source = -1;
  std::pair<int64_t, int64_t> fluxes[2];

  Plan(at::IntArrayRef plan, at::IntArrayRef shape_) : shape(shape_.vec()) {
    size_t at = 0;
    auto next = [&]() { return plan.at(at++); };
    products.resize(next());
    for (auto& p : products) p = next();
    const int64_t shared = next(), E = next();
    start = shared >= 0 ? products.at(shared) : E;
    stages.resize(next());
    for (auto& s : stages) {
      s.slot = next();
      next();  // write
      s.terms.resize(next());
      for (auto& t : s.terms) t = {next(), next()};
    }
    groups.resize(next());
    for (auto& g : groups) {
      g.first = next();
      g.second.resize(next());
      for (auto& i : g.second) i = next();
    }
    if (at < plan.size() && next() == 1) {
      vorticity = true;
      velocity[0] = next();
      velocity[1] = next();
      for (auto& f : fluxes) f = {next(), next()};
      source = next();
      TORCH_CHECK(shape.size() == 2, "etdrk_fused: the vorticity kind is 2D");
    }
    for (int64_t d = -static_cast<int64_t>(shape.size()); d < 0; ++d) dims.push_back(d);
  }

  at::Tensor physical(const at::Tensor& v) const {
    return shape.size() == 1 ? at::fft_irfft(v, shape[0]) : at::fft_irfftn(v, shape, dims);
  }
  at::Tensor spectral(const at::Tensor& x) const {
    return shape.size() == 1 ? at::fft_rfft(x) : at::fft_rfftn(x, std::nullopt, dims);
  }
};

// the steps of one op call: the coefficients' pointers and the buffers, allocated once
template <typename T>
struct Steps {
  const Plan& plan;
  const T* coefficients;
  int64_t m, rows;
  at::Tensor U, buffers[2];  // a stage's value; the states, written in turn (never the caller's)
  int next = 0;

  Steps(const Plan& plan_, const at::Tensor& co, const at::Tensor& u)
      : plan(plan_), coefficients(data(co)), m(co.numel() / std::max<int64_t>(co.size(0), 1)), rows(u.numel() / m) {
    TORCH_CHECK(co.is_contiguous() && co.scalar_type() == u.scalar_type(),
                "etdrk_fused: contiguous coefficients of the state's dtype expected");
    TORCH_CHECK(rows * m == u.numel(), "etdrk_fused: the state is not a batch of the coefficients' shape");
    U = at::empty_like(u, at::MemoryFormat::Contiguous);
    for (auto& b : buffers) b = at::empty_like(u, at::MemoryFormat::Contiguous);
  }
  static T* data(const at::Tensor& t) { return static_cast<T*>(t.data_ptr()); }
  const T* row(int64_t i) const { return i < 0 ? nullptr : coefficients + 2 * m * i; }

  // N(U_i) + f of the vorticity kind (see `velocities`): 4 FFTs and 3 passes
  at::Tensor vorticity_stage(const at::Tensor& u, const Stage& s, const std::vector<at::Tensor>& N,
                             std::vector<Term<T>>& terms) {
    const T* p = row(plan.products[s.slot]);
    terms.clear();
    for (const auto& [j, a] : s.terms) terms.push_back({row(a), data(N[j])});
    const T* from = data(u);
    if (terms.size() > 3) {  // U_i in full first (no tableau of ours has more than three a_ij in a stage)
      multiply_add(data(U), p, from, terms, {}, rows, m);
      from = data(U);
      p = nullptr;
      terms.clear();
    }
    if (!V[0].defined())  // the velocity spectra's buffers, made once per call
      for (auto& v : V) v = at::empty_like(u, at::MemoryFormat::Contiguous);
    stage_velocities(data(V[0]), data(V[1]), row(plan.velocity[0]), row(plan.velocity[1]), p, from, terms, rows, m);
    // ATen's transforms, allocating their outputs (its out= variants were no faster here, measured)
    at::Tensor x = plan.physical(V[0]), y = plan.physical(V[1]);
    velocity_products(data(x), data(y), x.numel());
    at::Tensor g[2] = {plan.spectral(x), plan.spectral(y)};
    at::Tensor& g1 = g[plan.fluxes[0].first];  // N_i, in place
    flux_combination(data(g1), data(g[plan.fluxes[1].first]), row(plan.fluxes[0].second),
                     row(plan.fluxes[1].second), row(plan.source), rows, m);
    return g1;
  }
  at::Tensor V[2];  // the vorticity kind's velocity spectra (-u, v)

  // n_steps steps from the spectrum u; `values`: u's physical values where the first stage transforms exactly
  // them (`squared`: ours and squared already, by `save`)
  at::Tensor run(at::Tensor u, std::optional<at::Tensor> values, int64_t n_steps, bool squared) {
    std::vector<at::Tensor> N;
    std::vector<Term<T>> terms;
    std::vector<std::pair<T*, const T*>> sums;
    for (int64_t step = 0; step < n_steps; ++step) {
      u = u.contiguous();
      N.clear();
      for (const auto& s : plan.stages) {
        if (plan.vorticity) {
          N.push_back(vorticity_stage(u, s, N, terms));
          continue;
        }
        at::Tensor x;  // the stage's physical values, ours
        if (values) {  // the saved frame's values: squared by `save` already, or a copy squared here
          x = squared ? *values : values->clone(at::MemoryFormat::Contiguous);
          if (!squared) square(data(x), x.numel());
          values.reset();
        } else {
          const T* p = row(plan.products[s.slot]);
          at::Tensor value = u;
          if (p != nullptr || !s.terms.empty()) {  // U_i = exp(c_i z) u + sum_j a_ij N_j
            terms.clear();
            for (const auto& [j, a] : s.terms) terms.push_back({row(a), data(N[j])});
            multiply_add(data(U), p, data(u), terms, {}, rows, m);
            value = U;
          }
          x = plan.physical(value);
          square(data(x), x.numel());
        }
        N.push_back(plan.spectral(x));
      }
      at::Tensor out = buffers[next];  // u' = exp(z) u + sum_i b_i N_i, the N_i sharing a b_i summed first
      next ^= 1;
      terms.clear();
      sums.clear();
      for (const auto& [b, members] : plan.groups) {
        terms.push_back({row(b), data(N[members[0]])});
        for (size_t i = 1; i < members.size(); ++i) sums.emplace_back(data(N[members[0]]), data(N[members[i]]));
      }
      multiply_add(data(out), row(plan.start), data(u), terms, sums, rows, m);
      u = out;
    }
    return u;
  }
};

template <typename F>
auto dispatch(const at::Tensor& u, F f) {
  TORCH_CHECK(u.scalar_type() == at::kComplexFloat || u.scalar_type() == at::kComplexDouble,
              "etdrk_fused: a complex64 or complex128 spectrum expected");
  return u.scalar_type() == at::kComplexFloat ? f(float{}) : f(double{});
}

at::Tensor advance(const at::Tensor& state, const std::optional<at::Tensor>& state_values,
                   const at::Tensor& coefficients, at::IntArrayRef plan, at::IntArrayRef shape, int64_t n_steps) {
  const Plan p(plan, shape);
  return dispatch(state, [&](auto t) {
    return Steps<decltype(t)>(p, coefficients, state).run(state, state_values, n_steps, false);
  });
}

// The whole rollout of `rollout` (solvers/_etdrk.py) in one call: every save_every steps the frame's physical
// values are written to out[:, k] (k = 1, 2, ...) and, where `first_is_state`, handed to the next step's first
// stage (its inverse transform, done once; `resume`: out[:, 0] is the frame of `state`, saved by an earlier call).
// Returns the last spectrum.
at::Tensor rollout(const at::Tensor& state, const at::Tensor& coefficients, at::IntArrayRef plan, at::IntArrayRef shape,
                   int64_t n_steps, int64_t save_every, bool first_is_state, bool resume, at::Tensor out) {
  const Plan p(plan, shape);
  return dispatch(state, [&](auto t) {
    Steps<decltype(t)> steps(p, coefficients, state);
    const int64_t rows = out.size(0), n = out.numel() / std::max<int64_t>(rows * out.size(1), 1);
    // our loops write out[b, k] where each is dense (and of the frames' dtype), as rollout's own `out` is
    const bool ours = rows > 0 && out.select(1, 0).select(0, 0).is_contiguous() &&
                      out.scalar_type() == c10::toRealValueType(state.scalar_type());
    at::Tensor u = state;
    std::optional<at::Tensor> values;
    if (first_is_state && resume && ours) {  // the saved frame's square: no inverse transform of the state
      values = at::empty(out.select(1, 0).sizes(), out.options());
      load_squared(steps.data(*values), steps.data(out), out.stride(0), rows, n);
    }
    for (int64_t done = 0; done < n_steps; done += save_every) {
      const int64_t k = std::min(save_every, n_steps - done);
      u = steps.run(u, values, k, true);
      values.reset();
      if (k == save_every) {
        at::Tensor frame = p.physical(u);
        const int64_t at = (done + k) / save_every;
        if (ours) {  // one loop: copied to out, and squared for the next step
          save(steps.data(frame), steps.data(out) + at * out.stride(1), out.stride(0), rows, n, first_is_state);
        } else {
          out.select(1, at).copy_(frame);
          if (first_is_state) square(steps.data(frame), frame.numel());
        }
        if (first_is_state) values = frame;  // squared: the next step's first stage transforms it
      }
    }
    return u;
  });
}

}  // namespace

TORCH_LIBRARY(pdeforge, m) {
  m.def(
      "etdrk_fused_flux_square(Tensor state, Tensor? values, Tensor coefficients, int[] plan, int[] shape, "
      "int n_steps) -> Tensor",
      &advance);
  m.def(
      "etdrk_fused_rollout(Tensor state, Tensor coefficients, int[] plan, int[] shape, int n_steps, int save_every, "
      "bool first_is_state, bool resume, Tensor(a!) out) -> Tensor",
      &rollout);
}
