// jstyle's sort of each column of (..., M, K) over its M rows, for XLA:CPU, with the
// permutation, and the permutation's inverse applied to a gradient. Built with
// onednn_conv.cc into one library and loaded by jstyle.onednn.
//
// The sliced Wasserstein and histogram losses sort every layer's responses at every
// evaluation (12.6 million values at relu1_1 of a 512x384 image), and XLA:CPU's sort is a
// comparison sort of (value, index) pairs that takes seconds there. This one is a least
// significant digit radix sort of the floats' bits (three passes of 11 bits), stable like
// jnp.sort (equal values keep their order; -0 sorts as, and comes back as, +0), one column
// per thread, on a transposed copy so that each column is contiguous.

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// An unsigned key whose order is the floats' order (NaNs of either sign at the ends).
inline uint32_t Key(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if (bits == 0x80000000u) bits = 0;  // -0 sorts as +0
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

inline float Value(uint32_t key) {
  uint32_t bits = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// Radix-sorts the m keys of one column, carrying their rows: the result is in `keys` and
// `index`; `keys_out` and `index_out` are scratch of m each.
void SortKeys(uint32_t* keys, int32_t* index, int64_t m, uint32_t* keys_out,
              int32_t* index_out) {
  constexpr int kBits = 11;
  constexpr uint32_t kBuckets = 1u << kBits;
  uint32_t *from = keys, *to = keys_out;
  int32_t *from_index = index, *to_index = index_out;
  for (int64_t i = 0; i < m; ++i) index[i] = static_cast<int32_t>(i);
  for (int shift = 0; shift < 32; shift += kBits) {
    int64_t count[kBuckets] = {};
    for (int64_t i = 0; i < m; ++i) ++count[(from[i] >> shift) & (kBuckets - 1)];
    bool one_bucket = false;
    for (uint32_t b = 0; b < kBuckets; ++b) one_bucket |= count[b] == m;
    if (one_bucket) continue;  // this digit is the same everywhere
    int64_t start = 0;
    for (uint32_t b = 0; b < kBuckets; ++b) {
      int64_t c = count[b];
      count[b] = start;
      start += c;
    }
    for (int64_t i = 0; i < m; ++i) {
      int64_t at = count[(from[i] >> shift) & (kBuckets - 1)]++;
      to[at] = from[i];
      to_index[at] = from_index[i];
    }
    std::swap(from, to);
    std::swap(from_index, to_index);
  }
  if (from != keys) {
    std::memcpy(keys, from, m * sizeof *keys);
    std::memcpy(index, from_index, m * sizeof *index);
  }
}

// (batch, M, K) of a buffer of rank >= 2 (leading axes are batch axes), or why not.
template <typename Dims>
ffi::Error Columns(const Dims& d, const char* what, int64_t& batch, int64_t& m, int64_t& k) {
  if (d.size() < 2) {
    return ffi::Error::InvalidArgument(std::string(what) + " must be (..., M, K)");
  }
  batch = 1;
  for (size_t i = 0; i + 2 < d.size(); ++i) batch *= d[i];
  m = d[d.size() - 2];
  k = d[d.size() - 1];
  if (m >= (int64_t{1} << 31)) {
    return ffi::Error::InvalidArgument(std::string(what) + ": M >= 2^31");
  }
  return ffi::Error::Success();
}

// visit(i, j) for every (i, j) of an M x K grid, in 32 x 32 blocks over the threads: a
// transposition that reads one side by rows and writes the other by columns keeps both
// in cache.
template <typename Visit>
void Blocked(int64_t m, int64_t k, Visit visit) {
  constexpr int64_t kBlock = 32;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i0 = 0; i0 < m; i0 += kBlock) {
    for (int64_t j0 = 0; j0 < k; j0 += kBlock) {
      for (int64_t i = i0; i < std::min(i0 + kBlock, m); ++i) {
        for (int64_t j = j0; j < std::min(j0 + kBlock, k); ++j) visit(i, j);
      }
    }
  }
}

ffi::Error SortColumnsImpl(ffi::Buffer<ffi::F32> x, ffi::ResultBuffer<ffi::F32> sorted,
                           ffi::ResultBuffer<ffi::S32> rows) {
  int64_t batch, m, k;
  if (auto error = Columns(x.dimensions(), "sort_columns: x", batch, m, k); error.failure()) {
    return error;
  }
  // Columns are strided by K: they are sorted transposed (K, M), each contiguous, and
  // transposed back (Blocked).
  // uninitialised: every element is written before it is read
  std::unique_ptr<uint32_t[]> keys(new uint32_t[m * k]), keys_out(new uint32_t[m * k]);
  std::unique_ptr<int32_t[]> index(new int32_t[m * k]), index_out(new int32_t[m * k]);
  for (int64_t b = 0; b < batch; ++b) {
    const float* in = x.typed_data() + b * m * k;
    float* out = sorted->typed_data() + b * m * k;
    int32_t* out_rows = rows->typed_data() + b * m * k;
    Blocked(m, k, [&](int64_t i, int64_t j) { keys[j * m + i] = Key(in[i * k + j]); });
#pragma omp parallel for schedule(dynamic)
    for (int64_t j = 0; j < k; ++j) {
      SortKeys(&keys[j * m], &index[j * m], m, &keys_out[j * m], &index_out[j * m]);
    }
    Blocked(m, k, [&](int64_t i, int64_t j) {
      out[i * k + j] = Value(keys[j * m + i]);
      out_rows[i * k + j] = index[j * m + i];
    });
  }
  return ffi::Error::Success();
}

// out[..., rows[..., i, j], j] = g[..., i, j]: the gradient of a column sort.
ffi::Error UnsortColumnsImpl(ffi::Buffer<ffi::F32> g, ffi::Buffer<ffi::S32> rows,
                             ffi::ResultBuffer<ffi::F32> out) {
  int64_t batch, m, k;
  if (auto error = Columns(g.dimensions(), "unsort_columns: g", batch, m, k); error.failure()) {
    return error;
  }
  const float* in = g.typed_data();
  const int32_t* index = rows.typed_data();
  float* result = out->typed_data();
  // Each column's rows are a permutation, so no two (b, i, j) write one place.
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < m; ++i) {
      const int64_t base = b * m * k;
      for (int64_t j = 0; j < k; ++j) {
        result[base + index[base + i * k + j] * k + j] = in[base + i * k + j];
      }
    }
  }
  return ffi::Error::Success();
}

// out[..., r, rank_r(i)] = t[..., r, i]: each row of t (sorted values) put at the ranks
// of x's values in the same row, x's own order (stable: equal values in order of
// position). With t a sorted target, out is x's row matched to it by rank, the optimal
// transport in one dimension; rows are contiguous, so there is nothing to transpose.
ffi::Error MatchRowsImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> t,
                         ffi::ResultBuffer<ffi::F32> out) {
  auto d = x.dimensions();
  auto dt = t.dimensions();
  if (d.size() < 1 || dt.size() != d.size() || !std::equal(d.begin(), d.end(), dt.begin()))
    return ffi::Error::InvalidArgument("match_rows: x and t must be of one shape (..., M)");
  const int64_t m = d[d.size() - 1];
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < d.size(); ++i) rows *= d[i];
  if (m >= (int64_t{1} << 31)) return ffi::Error::InvalidArgument("match_rows: M >= 2^31");
  const float* in = x.typed_data();
  const float* target = t.typed_data();
  float* result = out->typed_data();
#pragma omp parallel
  {
    // per thread, uninitialised: every element is written before it is read
    std::unique_ptr<uint32_t[]> keys(new uint32_t[m]), keys_out(new uint32_t[m]);
    std::unique_ptr<int32_t[]> index(new int32_t[m]), index_out(new int32_t[m]);
#pragma omp for schedule(dynamic)
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = in + r * m;
      for (int64_t i = 0; i < m; ++i) keys[i] = Key(row[i]);
      SortKeys(keys.get(), index.get(), m, keys_out.get(), index_out.get());
      const float* sorted = target + r * m;
      float* matched = result + r * m;
      for (int64_t i = 0; i < m; ++i) matched[index[i]] = sorted[i];
    }
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JstyleMatchRows, MatchRowsImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JstyleSortColumns, SortColumnsImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JstyleUnsortColumns, UnsortColumnsImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
