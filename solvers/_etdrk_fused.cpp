// The loop of pdeforge.solvers._etdrk_strategies.FusedFluxSquareSteps.advance, compiled: the same ATen operations
// in the same order (so the same numbers, tested), without returning to Python between them. Built on first use
// by _etdrk_native.py (torch.utils.cpp_extension); the per-operator headers keep the build to seconds.
#include <ATen/core/Tensor.h>
#include <ATen/ops/addcmul.h>
#include <ATen/ops/fft_irfft.h>
#include <ATen/ops/fft_irfftn.h>
#include <ATen/ops/fft_rfft.h>
#include <ATen/ops/fft_rfftn.h>
#include <ATen/ops/mul.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <vector>

namespace {

struct Term {
  int64_t j, a;  // N_j and the row of `coefficients` holding a_ij
};

struct Stage {
  int64_t slot;  // the node's product exp(c z) u_n it starts from
  bool write;    // whether it may accumulate into that product
  std::vector<Term> terms;
};

struct Group {
  int64_t b;  // the row of `coefficients` holding the weight
  std::vector<int64_t> stages;
};

// `plan`, written by _etdrk_native.pack: n_slots, per slot the row of its propagator (-1: the state itself), the
// slot the update starts from (-1: E u_n), the row of E, n_stages, per stage: slot, write, n_terms, (j, row) per
// term; n_groups, per group: row, n_stages, the stages.
struct Plan {
  std::vector<int64_t> products;
  int64_t shared = -1, E = -1;
  std::vector<Stage> stages;
  std::vector<Group> groups;
  std::vector<at::Tensor> row;
  std::vector<int64_t> shape, dims;

  Plan(const at::Tensor& coefficients, at::IntArrayRef plan, at::IntArrayRef shape_) : shape(shape_.vec()) {
    size_t at = 0;
    auto next = [&]() { return plan.at(at++); };
    products.resize(next());
    for (auto& p : products) p = next();
    shared = next();
    E = next();
    stages.resize(next());
    for (auto& s : stages) {
      s.slot = next();
      s.write = next() != 0;
      s.terms.resize(next());
      for (auto& t : s.terms) t = {next(), next()};
    }
    groups.resize(next());
    for (auto& g : groups) {
      g.b = next();
      g.stages.resize(next());
      for (auto& i : g.stages) i = next();
    }
    for (int64_t i = 0; i < coefficients.size(0); ++i) row.push_back(coefficients.select(0, i));
    for (int64_t d = -static_cast<int64_t>(shape.size()); d < 0; ++d) dims.push_back(d);
  }

  at::Tensor physical(const at::Tensor& v) const {
    return shape.size() == 1 ? at::fft_irfft(v, shape[0]) : at::fft_irfftn(v, shape, dims);
  }
  at::Tensor spectral(const at::Tensor& x) const {
    return shape.size() == 1 ? at::fft_rfft(x) : at::fft_rfftn(x, std::nullopt, dims);
  }

  // n_steps steps from the spectrum u; `values`: u's physical values where the first stage transforms exactly them
  // (`owned`: they are a scratch copy this op may overwrite)
  at::Tensor steps(at::Tensor u, std::optional<at::Tensor> values, int64_t n_steps, bool owned = false) const {
    for (int64_t step = 0; step < n_steps; ++step) {
      std::vector<at::Tensor> base;
      for (auto p : products) base.push_back(p < 0 ? u : at::mul(row[p], u));
      std::vector<at::Tensor> N;
      for (const auto& s : stages) {
        at::Tensor U = base[s.slot];
        for (size_t k = 0; k < s.terms.size(); ++k) {
          const auto& t = s.terms[k];
          U = (s.write || k > 0) ? U.addcmul_(row[t.a], N[t.j]) : at::addcmul(U, row[t.a], N[t.j]);
        }
        if (values) {  // the saved frame's values: square a copy where the frame is the caller's
          N.push_back(spectral(owned ? values->square_() : values->square()));
          values.reset();
        } else {
          N.push_back(spectral(physical(U).square_()));
        }
      }
      at::Tensor out = shared >= 0 ? base[shared] : at::mul(row[E], u);
      for (const auto& g : groups) {
        at::Tensor n = N[g.stages[0]];
        for (size_t i = 1; i < g.stages.size(); ++i) n.add_(N[g.stages[i]]);
        out.addcmul_(row[g.b], n);
      }
      u = out;
    }
    return u;
  }
};

at::Tensor advance(const at::Tensor& state, const std::optional<at::Tensor>& state_values,
                   const at::Tensor& coefficients, at::IntArrayRef plan, at::IntArrayRef shape, int64_t n_steps) {
  return Plan(coefficients, plan, shape).steps(state, state_values, n_steps);
}

// The whole rollout of `rollout` (solvers/_etdrk.py) in one call: every save_every steps the frame's physical
// values are written to out[:, k] (k = 1, 2, ...) and, where `first_is_state`, handed to the next step's first
// stage (its inverse transform, done once). Returns the last spectrum.
at::Tensor rollout(const at::Tensor& state, const at::Tensor& coefficients, at::IntArrayRef plan, at::IntArrayRef shape,
                   int64_t n_steps, int64_t save_every, bool first_is_state, at::Tensor out) {
  const Plan p(coefficients, plan, shape);
  at::Tensor u = state;
  std::optional<at::Tensor> values;
  for (int64_t done = 0; done < n_steps; done += save_every) {
    const int64_t k = std::min(save_every, n_steps - done);
    u = p.steps(u, values, k, true);
    values.reset();
    if (k == save_every) {
      at::Tensor frame = p.physical(u);
      out.select(1, (done + k) / save_every).copy_(frame);
      if (first_is_state) values = frame;  // ours: the next step squares it in place
    }
  }
  return u;
}

}  // namespace

TORCH_LIBRARY(pdeforge, m) {
  m.def(
      "etdrk_fused_flux_square(Tensor state, Tensor? values, Tensor coefficients, int[] plan, int[] shape, "
      "int n_steps) -> Tensor",
      &advance);
  m.def(
      "etdrk_fused_rollout(Tensor state, Tensor coefficients, int[] plan, int[] shape, int n_steps, int save_every, "
      "bool first_is_state, Tensor(a!) out) -> Tensor",
      &rollout);
}
