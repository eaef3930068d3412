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
at::Tensor advance(const at::Tensor& state, const std::optional<at::Tensor>& state_values,
                   const at::Tensor& coefficients, at::IntArrayRef plan, at::IntArrayRef shape, int64_t n_steps) {
  size_t at = 0;
  auto next = [&]() { return plan.at(at++); };
  std::vector<int64_t> products(next());
  for (auto& p : products) p = next();
  const int64_t shared = next(), E = next();
  std::vector<Stage> stages(next());
  for (auto& s : stages) {
    s.slot = next();
    s.write = next() != 0;
    s.terms.resize(next());
    for (auto& t : s.terms) t = {next(), next()};
  }
  std::vector<Group> groups(next());
  for (auto& g : groups) {
    g.b = next();
    g.stages.resize(next());
    for (auto& i : g.stages) i = next();
  }
  std::vector<at::Tensor> row(coefficients.size(0));
  for (int64_t i = 0; i < coefficients.size(0); ++i) row[i] = coefficients.select(0, i);
  std::vector<int64_t> dims;
  for (int64_t d = -static_cast<int64_t>(shape.size()); d < 0; ++d) dims.push_back(d);
  auto physical = [&](const at::Tensor& v) {
    return shape.size() == 1 ? at::fft_irfft(v, shape[0]) : at::fft_irfftn(v, shape, dims);
  };
  auto spectral = [&](const at::Tensor& x) {
    return shape.size() == 1 ? at::fft_rfft(x) : at::fft_rfftn(x, std::nullopt, dims);
  };

  at::Tensor u = state;
  std::optional<at::Tensor> values = state_values;
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
      if (values) {  // the saved frame's values: square a copy, the frame is the caller's
        N.push_back(spectral(values->square()));
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

}  // namespace

TORCH_LIBRARY(pdeforge, m) {
  m.def(
      "etdrk_fused_flux_square(Tensor state, Tensor? values, Tensor coefficients, int[] plan, int[] shape, "
      "int n_steps) -> Tensor",
      &advance);
}
