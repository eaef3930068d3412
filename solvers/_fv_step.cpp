// The time steps of pdeforge.solvers.fv.StaggeredNavierStokes2D (linear or van Leer face values, any explicit
// Runge-Kutta tableau, explicit or FFT-implicit viscosity, drag, a constant body force), compiled: plain loops over
// the MAC grid for the stencils, the limiter, the fluxes and their divergence, and ATen's FFT for the Poisson
// projection. Every loop does the arithmetic of the eager reference (solvers/fv.py, _fv_ops.py,
// _fv_interpolation.py) in its order, operation for operation, so the steps agree with it bit for bit (tested in
// tests/test_fv_fast.py); the build disables FMA contraction (-ffp-contract=off) to keep it so. Built on first use by
// _fv_native.py (torch.utils.cpp_extension).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/fft_irfft2.h>
#include <ATen/ops/fft_rfft2.h>
#include <ATen/ops/mul.h>
#include <torch/library.h>

#include <memory>
#include <utility>
#include <vector>

namespace {

// Stage terms, written by _fv_native.plan: n_stages, then per stage the number of its nonzero a_ij and the j of
// each, then the same for b. `coefficients` holds the a_ij and b_j in that order.
struct Term {
  int64_t j;
  double c;
};

struct Tableau {
  std::vector<std::vector<Term>> stages;  // stage i's terms (stage 0: none)
  std::vector<Term> final;

  Tableau(at::IntArrayRef plan, at::ArrayRef<double> coefficients) {
    size_t at = 0, ac = 0;
    auto next = [&]() { return plan.at(at++); };
    auto read = [&](std::vector<Term>& terms) {
      terms.resize(next());
      for (auto& t : terms) t = {next(), coefficients.at(ac++)};
    };
    stages.resize(next());
    for (auto& s : stages) read(s);
    read(final);
  }
};

// van Leer's limited upwind value (_fv_interpolation._van_leer_face's `limited`): up + s_u s_d / (s_u + s_d) where
// the slopes s_u = up - far and s_d = down - up agree in sign, else up (+ 0, as the reference adds).
template <typename T>
inline T limited(T up, T far, T down) {
  const T s_up = up - far, s_down = down - up;
  const T prod = s_up * s_down;
  const bool positive = prod > T(0);
  const T denom = positive ? s_up + s_down : T(1);
  const T ratio = prod / denom;
  return up + (positive ? ratio : T(0));
}

// the face value half a cell forward of q0 along an axis (q_m1, q_p1, q_p2: its neighbours there), advected by a:
// the reference limits both upwind choices and picks one; limiting the picked one gives the same bits
template <typename T>
inline T van_leer(T q_m1, T q0, T q_p1, T q_p2, T a) {
  const bool forward = a >= T(0);
  return limited(forward ? q0 : q_p1, forward ? q_m1 : q_p2, forward ? q_p1 : q0);
}

// The four fluxes a_jd q_jd (_fv_interpolation.advection) on n points of one row of the padded u and v: `u` is the
// row, `u_m`, `u_p`, `u_pp` the rows at x - h, x + h, x + 2 h (likewise v); the row's own neighbours along y are
// u[j - 1], u[j + 1], u[j + 2]. Free functions of restrict pointers, so that the loops vectorize.
template <typename T, bool VanLeer>
void flux_row(const T* __restrict u_m, const T* __restrict u, const T* __restrict u_p, const T* __restrict u_pp,
              const T* __restrict v_m, const T* __restrict v, const T* __restrict v_p, const T* __restrict v_pp,
              T* __restrict fxu, T* __restrict fyu, T* __restrict fxv, T* __restrict fyv, int64_t n) {
  const T half = T(0.5);
  for (int64_t j = 0; j < n; ++j) {
    const T a_ux = half * (u[j] + u_p[j]);  // linear_advecting_velocity, [j, d] = [u, x], [u, y], [v, x], [v, y]
    const T a_uy = half * (v[j] + v_p[j]);
    const T a_vx = half * (u[j] + u[j + 1]);
    const T a_vy = half * (v[j] + v[j + 1]);
    T q_ux, q_uy, q_vx, q_vy;
    if constexpr (VanLeer) {
      q_ux = van_leer(u_m[j], u[j], u_p[j], u_pp[j], a_ux);
      q_uy = van_leer(u[j - 1], u[j], u[j + 1], u[j + 2], a_uy);
      q_vx = van_leer(v_m[j], v[j], v_p[j], v_pp[j], a_vx);
      q_vy = van_leer(v[j - 1], v[j], v[j + 1], v[j + 2], a_vy);
    } else {  // linear_advected
      q_ux = half * (u[j] + u_p[j]);
      q_uy = half * (u[j] + u[j + 1]);
      q_vx = half * (v[j] + v_p[j]);
      q_vy = half * (v[j] + v[j + 1]);
    }
    fxu[j] = q_ux * a_ux;
    fyu[j] = q_uy * a_uy;
    fxv[j] = q_vx * a_vx;
    fyv[j] = q_vy * a_vy;
  }
}

// One row of one component of explicit_terms: -div(flux) [+ nu L_h q] [- drag q] [+ f]. `q` is the padded row
// (its rows above and below at q - P, q + P), `fx_m` the x-flux of the row before, `fy` has a halo point at -1.
template <typename T, bool Viscous, bool Dragged, bool Forced>
void rhs_row(const T* __restrict q, int64_t P, const T* __restrict fx, const T* __restrict fx_m,
             const T* __restrict fy, const T* __restrict f, T* __restrict out, int64_t n, T h, T h2, T nu, T drag) {
  for (int64_t j = 0; j < n; ++j) {
    T r = -(((fx[j] - fx_m[j]) / h) + ((fy[j] - fy[j - 1]) / h));
    if constexpr (Viscous) {  // _fv_ops.laplacian: the rolls along y, then x, then the centre
      const T lap = ((((q[j - 1] + q[j + 1]) + q[j - P]) + q[j + P]) - T(4) * q[j]) / h2;
      r = r + nu * lap;
    }
    if constexpr (Dragged) r = r - drag * q[j];
    if constexpr (Forced) r = r + f[j];
    out[j] = r;
  }
}

// out = u + dt * ((0 + c_0 k_0) + c_1 k_1 + c_2 k_2) over the first Terms terms
template <typename T, int Terms>
void sum_row(const T* __restrict u, const T* __restrict k0, const T* __restrict k1, const T* __restrict k2,
             const T* c, T* __restrict out, int64_t n, T dt) {
  const T c0 = Terms > 0 ? c[0] : T(0), c1 = Terms > 1 ? c[1] : T(0), c2 = Terms > 2 ? c[2] : T(0);
  for (int64_t p = 0; p < n; ++p) {
    T acc = T(0);
    if constexpr (Terms > 0) acc = T(0) + c0 * k0[p];
    if constexpr (Terms > 1) acc = acc + c1 * k1[p];
    if constexpr (Terms > 2) acc = acc + c2 * k2[p];
    out[p] = u[p] + dt * acc;
  }
}

// one row of the MAC divergence (_fv_ops.divergence): (u_i - u_{i-1}) / h + (v_j - v_{j-1}) / h; `u_m`: row i - 1
template <typename T>
void divergence_row(const T* __restrict u, const T* __restrict u_m, const T* __restrict v, T* __restrict out,
                    int64_t n, T h) {
  out[0] = ((u[0] - u_m[0]) / h) + ((v[0] - v[n - 1]) / h);
  for (int64_t j = 1; j < n; ++j) out[j] = ((u[j] - u_m[j]) / h) + ((v[j] - v[j - 1]) / h);
}

// one row of velocity - gradient(p) (_fv_ops.gradient, forward differences); `p_p`: the pressure's row i + 1
template <typename T>
void subtract_gradient_row(const T* __restrict p, const T* __restrict p_p, T* __restrict u, T* __restrict v,
                           int64_t n, T h) {
  for (int64_t j = 0; j < n; ++j) u[j] = u[j] - ((p_p[j] - p[j]) / h);
  for (int64_t j = 0; j < n - 1; ++j) v[j] = v[j] - ((p[j + 1] - p[j]) / h);
  v[n - 1] = v[n - 1] - ((p[0] - p[n - 1]) / h);
}

template <typename T>
struct Stepper {
  int64_t B, N, P;  // batch, cells per side, padded row (N + 4)
  T h, h2, dt, nu, drag;
  bool van_leer_faces, viscous, dragged;
  const T* force;  // (2, N, N) or null
  at::Tensor symbol, decay;  // complex: 1 / symbol of D G (0 at the mean), exp(nu dt/2 L_h) (undefined: explicit)
  Tableau tableau;

  // copy a periodic (N, N) field into a (N + 4)^2 buffer with two halo cells on each side
  void pad(const T* f, T* out) const {
    for (int64_t i = -2; i < N + 2; ++i) {
      const T* row = f + ((i + N) % N) * N;
      T* o = out + (i + 2) * P;
      o[0] = row[N - 2];
      o[1] = row[N - 1];
      for (int64_t k = 0; k < N; ++k) o[k + 2] = row[k];
      o[N + 2] = row[0];
      o[N + 3] = row[1];
    }
  }

  // k = explicit_terms(y): -div(flux) [+ nu L_h y] [- drag y] [+ f], both (B, 2, N, N); the options are template
  // arguments so that the loops have no branches (and vectorize)
  void explicit_terms(const T* y, T* k) const {
    if (van_leer_faces) {
      explicit_terms_with<true>(y, k);
    } else {
      explicit_terms_with<false>(y, k);
    }
  }

  template <bool VanLeer>
  void explicit_terms_with(const T* y, T* k) const {
    if (viscous) {
      explicit_terms_with<VanLeer, true>(y, k);
    } else {
      explicit_terms_with<VanLeer, false>(y, k);
    }
  }

  template <bool VanLeer, bool Viscous>
  void explicit_terms_with(const T* y, T* k) const {
    if (dragged) {
      explicit_terms_with<VanLeer, Viscous, true>(y, k);
    } else {
      explicit_terms_with<VanLeer, Viscous, false>(y, k);
    }
  }

  template <bool VanLeer, bool Viscous, bool Dragged>
  void explicit_terms_with(const T* y, T* k) const {
    if (force) {
      explicit_terms_with<VanLeer, Viscous, Dragged, true>(y, k);
    } else {
      explicit_terms_with<VanLeer, Viscous, Dragged, false>(y, k);
    }
  }

  template <bool VanLeer, bool Viscous, bool Dragged, bool Forced>
  void explicit_terms_with(const T* y, T* k) const {
    const int64_t B = this->B, N = this->N, P = this->P;
    const T h = this->h, h2 = this->h2, nu = this->nu, drag = this->drag;
    const T* force = this->force;
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      // The padded fields, and the fluxes of two rows only: row i's divergence needs the x-fluxes of rows i and
      // i - 1 and the y-fluxes of row i (columns -1 .. N - 1), so the fluxes stay in the L1 cache.
      const int64_t M = N + 1;
      std::unique_ptr<T[]> work(new T[2 * P * P + 6 * M]);  // every entry is written before it is read
      T* U = work.get();
      T* V = U + P * P;
      T* Fxu[2] = {V + P * P, V + P * P + M};
      T* Fxv[2] = {Fxu[1] + M, Fxu[1] + 2 * M};
      T* Fyu = Fxv[1] + M;
      T* Fyv = Fyu + M;
      for (int64_t b = begin; b < end; ++b) {
        const T* yb = y + b * 2 * N * N;
        pad(yb, U);
        pad(yb + N * N, V);
        T* ku = k + b * 2 * N * N;
        T* kv = ku + N * N;
        for (int64_t i = -1; i < N; ++i) {
          const int64_t now = (i + 1) & 1, before = now ^ 1;
          const T* u = U + (i + 2) * P + 1;  // column -1
          const T* v = V + (i + 2) * P + 1;
          flux_row<T, VanLeer>(u - P, u, u + P, u + 2 * P, v - P, v, v + P, v + 2 * P, Fxu[now], Fyu, Fxv[now], Fyv,
                               M);
          if (i < 0) continue;
          const T* fu = Forced ? force + i * N : nullptr;
          const T* fv = Forced ? force + (N + i) * N : nullptr;
          rhs_row<T, Viscous, Dragged, Forced>(u + 1, P, Fxu[now] + 1, Fxu[before] + 1, Fyu + 1, fu, ku + i * N, N, h,
                                               h2, nu, drag);
          rhs_row<T, Viscous, Dragged, Forced>(v + 1, P, Fxv[now] + 1, Fxv[before] + 1, Fyv + 1, fv, kv + i * N, N, h,
                                               h2, nu, drag);
        }
      }
    });
  }

  // out = base + dt * ((0 + c_0 k_0) + c_1 k_1 + ...), Python's sum of the nonzero terms
  void combine(const T* base, const std::vector<const T*>& ks, const std::vector<Term>& terms, T* out) const {
    std::vector<const T*> k;
    std::vector<T> c;
    for (const auto& term : terms) {
      k.push_back(ks.at(term.j));
      c.push_back(static_cast<T>(term.c));
    }
    const T dt = this->dt;
    at::parallel_for(0, B * 2 * N * N, 1 << 14, [&](int64_t begin, int64_t end) {
      const int64_t n = end - begin;
      T* o = out + begin;
      const T* u = base + begin;
      switch (k.size()) {  // the tableaux here have at most three terms a stage: loops that vectorize
        case 0:
          sum_row<T, 0>(u, nullptr, nullptr, nullptr, nullptr, o, n, dt);
          break;
        case 1:
          sum_row<T, 1>(u, k[0] + begin, nullptr, nullptr, c.data(), o, n, dt);
          break;
        case 2:
          sum_row<T, 2>(u, k[0] + begin, k[1] + begin, nullptr, c.data(), o, n, dt);
          break;
        case 3:
          sum_row<T, 3>(u, k[0] + begin, k[1] + begin, k[2] + begin, c.data(), o, n, dt);
          break;
        default:
          for (int64_t p = 0; p < n; ++p) {
            T acc = T(0) + c[0] * k[0][begin + p];
            for (size_t m = 1; m < k.size(); ++m) acc = acc + c[m] * k[m][begin + p];
            o[p] = u[p] + dt * acc;
          }
      }
    });
  }

  // Leray projection in place (StaggeredNavierStokes2D.project): y -= G (D G)^+ D y, the solve by ATen's FFT
  void project(T* y, const at::TensorOptions& options) const {
    at::Tensor div = at::empty({B, N, N}, options);
    T* d = div.data_ptr<T>();
    const int64_t N = this->N;
    const T h = this->h;
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const T* u = y + b * 2 * N * N;
        for (int64_t i = 0; i < N; ++i)
          divergence_row(u + i * N, u + ((i + N - 1) % N) * N, u + (N + i) * N, d + (b * N + i) * N, N, h);
      }
    });
    at::Tensor spectrum = at::fft_rfft2(div);
    spectrum.mul_(symbol);
    at::Tensor p = at::fft_irfft2(spectrum, at::IntArrayRef{N, N}).contiguous();
    const T* pp = p.data_ptr<T>();
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        T* u = y + b * 2 * N * N;
        const T* pb = pp + b * N * N;
        for (int64_t i = 0; i < N; ++i)
          subtract_gradient_row(pb + i * N, pb + ((i + 1) % N) * N, u + i * N, u + (N + i) * N, N, h);
      }
    });
  }

  // exp(nu dt/2 L_h) by FFT (StaggeredNavierStokes2D.diffuse)
  at::Tensor diffuse(const at::Tensor& velocity) const {
    return at::fft_irfft2(at::fft_rfft2(velocity).mul_(decay), at::IntArrayRef{N, N}).contiguous();
  }

  at::Tensor steps(const at::Tensor& velocity, int64_t n_steps) const {
    const auto options = velocity.options();
    at::Tensor u = velocity.clone(at::MemoryFormat::Contiguous);
    at::Tensor y = at::empty_like(u);
    const size_t n_stages = tableau.stages.size();
    std::vector<at::Tensor> k;
    std::vector<const T*> kp;
    for (size_t s = 0; s < n_stages; ++s) {
      k.push_back(at::empty_like(u));
      kp.push_back(k.back().data_ptr<T>());
    }
    for (int64_t step = 0; step < n_steps; ++step) {
      if (decay.defined()) u = diffuse(u);
      const T* base = u.data_ptr<T>();
      T* yp = y.data_ptr<T>();
      for (size_t s = 0; s < n_stages; ++s) {
        if (s == 0) {
          explicit_terms(base, k[s].data_ptr<T>());
        } else {
          combine(base, kp, tableau.stages[s], yp);
          project(yp, options);
          explicit_terms(yp, k[s].data_ptr<T>());
        }
      }
      combine(base, kp, tableau.final, yp);
      project(yp, options);
      if (decay.defined()) {
        u = diffuse(y);
      } else {
        std::swap(u, y);
      }
    }
    return u;
  }
};

template <typename T>
at::Tensor run(const at::Tensor& velocity, const std::optional<at::Tensor>& force, const at::Tensor& symbol,
               const std::optional<at::Tensor>& decay, at::IntArrayRef plan, at::ArrayRef<double> coefficients,
               double dt, double h, double h2, double nu, double drag, bool van_leer_faces, int64_t n_steps) {
  at::Tensor f = force ? force->contiguous() : at::Tensor();
  Stepper<T> s{velocity.size(0),
               velocity.size(-1),
               velocity.size(-1) + 4,
               static_cast<T>(h),
               static_cast<T>(h2),
               static_cast<T>(dt),
               static_cast<T>(nu),
               static_cast<T>(drag),
               van_leer_faces,
               nu != 0.0,
               drag != 0.0,
               force ? f.data_ptr<T>() : nullptr,
               symbol,
               decay ? *decay : at::Tensor(),
               Tableau(plan, coefficients)};
  return s.steps(velocity, n_steps);
}

// n_steps steps of the FV scheme from `velocity` (B, 2, N, N), float32 or float64, contiguous, on the CPU. `force`:
// (1, 2, N, N) or None; `symbol`: the complex (N, N/2 + 1) inverse Poisson symbol; `decay`: the complex half-step
// diffusion factor (None: viscosity explicit, `nu` its coefficient, 0 for none); `h2` = h**2 as Python computes it.
at::Tensor fv_steps(const at::Tensor& velocity, const std::optional<at::Tensor>& force, const at::Tensor& symbol,
                    const std::optional<at::Tensor>& decay, at::IntArrayRef plan, at::ArrayRef<double> coefficients,
                    double dt, double h, double h2, double nu, double drag, bool van_leer_faces, int64_t n_steps) {
  TORCH_CHECK(velocity.dim() == 4 && velocity.size(1) == 2 && velocity.size(2) == velocity.size(3),
              "fv_steps: expected a velocity (B, 2, N, N)");
  TORCH_CHECK(velocity.device().is_cpu(), "fv_steps: CPU tensors only");
  if (velocity.scalar_type() == at::kFloat)
    return run<float>(velocity, force, symbol, decay, plan, coefficients, dt, h, h2, nu, drag, van_leer_faces,
                      n_steps);
  TORCH_CHECK(velocity.scalar_type() == at::kDouble, "fv_steps: float32 or float64 only");
  return run<double>(velocity, force, symbol, decay, plan, coefficients, dt, h, h2, nu, drag, van_leer_faces,
                     n_steps);
}

}  // namespace

TORCH_LIBRARY(pdeforge_fv, m) {
  m.def(
      "fv_steps(Tensor velocity, Tensor? force, Tensor symbol, Tensor? decay, int[] plan, float[] coefficients, "
      "float dt, float h, float h2, float nu, float drag, bool van_leer, int n_steps) -> Tensor");
  m.impl("fv_steps", c10::DispatchKey::CPU, &fv_steps);
}
