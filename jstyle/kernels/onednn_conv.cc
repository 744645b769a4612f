// jstyle's 3x3 convolutions for XLA:CPU, through oneDNN. Built and loaded by jstyle.onednn.
//
// Two XLA FFI handlers, each a 3x3, stride 1, SAME convolution of NHWC images with an HWIO
// kernel, which is all VGG-19 needs, forward and (with the flipped, transposed kernel, made
// here: attribute `flipped`) for the input gradient. Each keeps its kernels in the layout
// its primitive wants, per kernel content (Kept below), so a run lays out each layer's
// weights once, not at every evaluation:
//
// - bfloat16. XLA:CPU computes a bfloat16 convolution by converting its operands to
//   float32 and back, so bfloat16 is never faster there. oneDNN runs it with the CPU's
//   bfloat16 dot-product instructions (AVX512-BF16, AMX-BF16), which accumulate in float32
//   and round the result to bfloat16.
// - float32 by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray 2016): 36
//   multiplications per 4x4 outputs and input-output channel pair where the direct form
//   makes 144, so about a third of the time of XLA's direct kernel on AVX-512 CPUs. Its
//   kept kernel is the transformed one (four times the kernel's size).

#include <dnnl.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using Shape = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>;  // N, H, W, C, O

struct Conv {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward primitive;
  dnnl::reorder weights_in;  // HWIO -> the layout the primitive chose
};

// (N, H, W, C, O) of a call: x (..., H, W, C) with its leading axes as N, and the kernel
// (3, 3, C, O), with leading axes of size 1 where vmap's expand_dims added them; `flipped`:
// the kernel is (3, 3, O, C), to be applied flipped and transposed (an input gradient).
template <typename Dims>
ffi::Error ShapeOf(const Dims& xd, const Dims& kd, Shape& shape, bool flipped = false) {
  if (xd.size() < 3 || kd.size() < 4) {
    return ffi::Error::InvalidArgument("conv3x3: x must be (..., H, W, C), kernel (3, 3, C, O)");
  }
  int64_t n = 1;
  for (size_t i = 0; i + 3 < xd.size(); ++i) n *= xd[i];
  int64_t h = xd[xd.size() - 3], w = xd[xd.size() - 2], c = xd[xd.size() - 1];
  size_t kr = kd.size();
  for (size_t i = 0; i + 4 < kr; ++i) {
    if (kd[i] != 1) return ffi::Error::InvalidArgument("conv3x3: one kernel per call");
  }
  if (kd[kr - 4] != 3 || kd[kr - 3] != 3 || kd[flipped ? kr - 1 : kr - 2] != c) {
    return ffi::Error::InvalidArgument(flipped ? "conv3x3: the kernel must be (3, 3, O, C)"
                                               : "conv3x3: the kernel must be (3, 3, C, O)");
  }
  shape = {n, h, w, c, kd[flipped ? kr - 2 : kr - 1]};
  return ffi::Error::Success();
}

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Primitives take their scratchpad from jstyle (Scratchpad below). By default oneDNN 2
// hands a primitive the scratchpad of the thread that created it, and XLA calls a custom call from whichever of
// its threads is free: a later call then runs on a buffer that thread has since grown or
// freed (a crash at the second distinct kernel of one shape, seen on oneDNN 2.6).
dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// XLA runs independent operations at once (the photo's and the painting's networks, say).
// Every call works in the shared buffers below, and each already uses every core: the
// calls take turns.
std::mutex& Turn() {
  static std::mutex mutex;
  return mutex;
}

// Working memory shared by every call (they take turns), grown to the largest need: the
// Winograd kernel's blocked operands and every primitive's scratchpad (the Winograd
// kernel's transformed tiles: about 2.25 times its input and output), so a run holds one
// layer's worth rather than one per shape. Turn() held.
enum Slot { kScratchpad, kSource, kDestination, kSlots };

void* Buffer(Slot slot, size_t bytes) {
  static dnnl::memory buffers[kSlots];
  static size_t sizes[kSlots] = {};
  if (bytes == 0) return nullptr;
  if (sizes[slot] < bytes) {
    buffers[slot] = dnnl::memory();  // freed before the larger one is taken
    buffers[slot] = dnnl::memory({{static_cast<dnnl::memory::dim>(bytes)},
                                  dnnl::memory::data_type::u8, dnnl::memory::format_tag::a},
                                 Engine());
    sizes[slot] = bytes;
  }
  return buffers[slot].get_data_handle();
}

dnnl::memory Scratchpad(const dnnl::memory::desc& desc) {
  return dnnl::memory(desc, Engine(), Buffer(kScratchpad, desc.get_size()));
}

// Kernels laid out for their primitives, kept across calls and shapes, the most recently
// used first: a run lays out each layer's kernel (and its input gradient's) once, not at
// every evaluation (the Winograd transform of a 512x512 kernel takes 40 ms, its
// convolution at 64x48 px 18 ms; the bfloat16 reorder is cheaper, but would otherwise take
// a fresh buffer at every call). Found by the kernel's bytes, compared whole (a millisecond for
// the largest), whether it is applied flipped, and the layout the primitive wants (it
// names the data type and depends on the image's size). Past kKeptBytes the least recently
// used go: the paper's network keeps about 0.6 GB in float32 by Winograd, forward and
// backward.
struct Kept {
  dnnl::memory::desc layout;
  bool flipped;
  std::vector<char> kernel;  // the HWIO kernel as it came
  dnnl::memory laid_out;
};

// The input gradient's kernel of an HWIO kernel (3, 3, o, c) of elements T: flipped in
// space, its input and output channels swapped, as HWIO (3, 3, c, o). Made once per kept
// kernel, here, rather than by XLA at every evaluation (its transpose of the channel axes
// is slow: see the README's Performance).
template <typename T>
std::vector<char> FlippedTransposed(const char* bytes, int64_t c, int64_t o) {
  constexpr int64_t kBlock = 32;  // transposed in 32x32 blocks: both sides stay in cache
  const T* kernel = reinterpret_cast<const T*>(bytes);
  std::vector<char> out(static_cast<size_t>(9 * c * o) * sizeof(T));
  T* turned = reinterpret_cast<T*>(out.data());
  for (int64_t h = 0; h < 3; ++h) {
    for (int64_t w = 0; w < 3; ++w) {
      const T* from = kernel + ((2 - h) * 3 + (2 - w)) * o * c;  // [o][c] at (2-h, 2-w)
      T* to = turned + (h * 3 + w) * c * o;                        // [c][o] at (h, w)
      for (int64_t i0 = 0; i0 < o; i0 += kBlock) {
        for (int64_t j0 = 0; j0 < c; j0 += kBlock) {
          for (int64_t i = i0; i < std::min(o, i0 + kBlock); ++i) {
            for (int64_t j = j0; j < std::min(c, j0 + kBlock); ++j) to[j * o + i] = from[i * c + j];
          }
        }
      }
    }
  }
  return out;
}
constexpr size_t kKeptBytes = size_t{1} << 30;

// Kernels laid out since the library was loaded (JstyleKernelsLaidOut).
std::atomic<int64_t> laid_out{0};

// The kernel `kernel` (HWIO (3, 3, c, o) of `type`; `flipped`: the (3, 3, o, c) kernel
// whose flipped, transposed self the primitive applies) in the primitive's `layout`, by
// `reorder` (made from HWIO), laid out now unless kept; Turn() held.
const dnnl::memory& KeptWeights(const dnnl::reorder& reorder,
                                const dnnl::memory::desc& layout, const void* kernel,
                                bool flipped, int64_t c, int64_t o,
                                dnnl::memory::data_type type, dnnl::stream& stream) {
  static std::list<Kept> kept;
  static size_t kept_bytes = 0;
  const dnnl::memory::desc user({o, c, 3, 3}, type, dnnl::memory::format_tag::hwio);
  const size_t bytes = user.get_size();
  for (auto it = kept.begin(); it != kept.end(); ++it) {
    if (it->layout == layout && it->flipped == flipped && it->kernel.size() == bytes &&
        std::memcmp(it->kernel.data(), kernel, bytes) == 0) {
      kept.splice(kept.begin(), kept, it);
      return kept.front().laid_out;
    }
  }
  const size_t size = bytes + layout.get_size();
  while (!kept.empty() && kept_bytes + size > kKeptBytes) {
    kept_bytes -= kept.back().kernel.size() + kept.back().layout.get_size();
    kept.pop_back();
  }
  Kept entry{layout, flipped,
             std::vector<char>(static_cast<const char*>(kernel),
                               static_cast<const char*>(kernel) + bytes),
             dnnl::memory(layout, Engine())};
  std::vector<char> turned;
  if (flipped) {
    turned = type == dnnl::memory::data_type::bf16
                 ? FlippedTransposed<uint16_t>(entry.kernel.data(), c, o)
                 : FlippedTransposed<float>(entry.kernel.data(), c, o);
  }
  dnnl::memory source(user, Engine(), flipped ? turned.data() : entry.kernel.data());
  reorder.execute(stream, source, entry.laid_out);
  stream.wait();
  ++laid_out;
  kept.push_front(std::move(entry));
  kept_bytes += size;
  return kept.front().laid_out;
}

// Primitives are built once per shape (a millisecond or two each) and shared.
std::shared_ptr<Conv> ConvFor(const Shape& shape) {
  static std::mutex mutex;
  static std::map<Shape, std::shared_ptr<Conv>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = cache.find(shape);
  if (found != cache.end()) return found->second;
  auto [n, h, w, c, o] = shape;
  using tag = dnnl::memory::format_tag;
  const auto bf16 = dnnl::memory::data_type::bf16;
  dnnl::memory::desc src({n, c, h, w}, bf16, tag::nhwc);
  dnnl::memory::desc weights({o, c, 3, 3}, bf16, tag::any);
  dnnl::memory::desc dst({n, o, h, w}, bf16, tag::nhwc);
  dnnl::convolution_forward::desc desc(
      dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src, weights,
      dst, {1, 1}, {1, 1}, {1, 1});
  dnnl::convolution_forward::primitive_desc pd(desc, UserScratchpad(), Engine());
  dnnl::memory::desc user_weights({o, c, 3, 3}, bf16, tag::hwio);
  dnnl::reorder::primitive_desc reorder_pd(Engine(), user_weights, Engine(),
                                           pd.weights_desc());
  auto conv = std::make_shared<Conv>(
      Conv{pd, dnnl::convolution_forward(pd), dnnl::reorder(reorder_pd)});
  cache.emplace(shape, conv);
  return conv;
}

ffi::Error Conv3x3Impl(ffi::Buffer<ffi::BF16> x, ffi::Buffer<ffi::BF16> kernel,
                       ffi::ResultBuffer<ffi::BF16> y, bool flipped) {
  Shape shape;
  if (auto error = ShapeOf(x.dimensions(), kernel.dimensions(), shape, flipped);
      error.failure()) {
    return error;
  }
  auto [n, h, w, c, o] = shape;
  try {
    auto conv = ConvFor(shape);
    std::lock_guard<std::mutex> turn(Turn());
    auto& engine = Engine();
    dnnl::stream stream(engine);
    const dnnl::memory& weights =
        KeptWeights(conv->weights_in, conv->pd.weights_desc(), kernel.untyped_data(), flipped,
                    c, o, dnnl::memory::data_type::bf16, stream);
    dnnl::memory src(conv->pd.src_desc(), engine, x.untyped_data());
    dnnl::memory dst(conv->pd.dst_desc(), engine, y->untyped_data());
    conv->primitive.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights},
                                     {DNNL_ARG_DST, dst},
                                     {DNNL_ARG_SCRATCHPAD, Scratchpad(conv->pd.scratchpad_desc())}});
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("oneDNN: ") + e.what());
  }
  return ffi::Error::Success();
}

// --- float32 by Winograd ---------------------------------------------------------------

// oneDNN's Winograd kernel reads and writes its own blocked layouts: the NHWC operands are
// reordered into and out of the shared buffers (Buffer), so no call allocates.
struct Winograd {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward primitive;
  dnnl::reorder src_in, dst_out, weights_in;
};

dnnl::convolution_forward::primitive_desc WinogradDesc(const Shape& shape) {
  auto [n, h, w, c, o] = shape;
  using tag = dnnl::memory::format_tag;
  const auto f32 = dnnl::memory::data_type::f32;
  dnnl::memory::desc src({n, c, h, w}, f32, tag::any);
  dnnl::memory::desc weights({o, c, 3, 3}, f32, tag::any);
  dnnl::memory::desc dst({n, o, h, w}, f32, tag::any);
  dnnl::convolution_forward::desc desc(
      dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_winograd, src,
      weights, dst, {1, 1}, {1, 1}, {1, 1});
  return dnnl::convolution_forward::primitive_desc(desc, UserScratchpad(), Engine());
}

std::shared_ptr<Winograd> WinogradFor(const Shape& shape) {
  static std::mutex mutex;
  static std::map<Shape, std::shared_ptr<Winograd>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = cache.find(shape);
  if (found != cache.end()) return found->second;
  auto [n, h, w, c, o] = shape;
  using tag = dnnl::memory::format_tag;
  const auto f32 = dnnl::memory::data_type::f32;
  auto& engine = Engine();
  auto pd = WinogradDesc(shape);
  dnnl::memory::desc user_src({n, c, h, w}, f32, tag::nhwc);
  dnnl::memory::desc user_dst({n, o, h, w}, f32, tag::nhwc);
  dnnl::memory::desc user_weights({o, c, 3, 3}, f32, tag::hwio);
  auto conv = std::make_shared<Winograd>();
  conv->pd = pd;
  conv->primitive = dnnl::convolution_forward(pd);
  conv->src_in = dnnl::reorder(dnnl::reorder::primitive_desc(engine, user_src, engine,
                                                             pd.src_desc()));
  conv->dst_out = dnnl::reorder(dnnl::reorder::primitive_desc(engine, pd.dst_desc(), engine,
                                                              user_dst));
  conv->weights_in = dnnl::reorder(dnnl::reorder::primitive_desc(engine, user_weights, engine,
                                                                 pd.weights_desc()));
  cache.emplace(shape, conv);
  return conv;
}

ffi::Error Conv3x3F32Impl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> kernel,
                          ffi::ResultBuffer<ffi::F32> y, bool flipped) {
  Shape shape;
  if (auto error = ShapeOf(x.dimensions(), kernel.dimensions(), shape, flipped);
      error.failure()) {
    return error;
  }
  auto [n, h, w, c, o] = shape;
  try {
    auto conv = WinogradFor({n, h, w, c, o});
    std::lock_guard<std::mutex> turn(Turn());
    auto& engine = Engine();
    dnnl::stream stream(engine);
    using tag = dnnl::memory::format_tag;
    const auto f32 = dnnl::memory::data_type::f32;
    const dnnl::memory& weights =
        KeptWeights(conv->weights_in, conv->pd.weights_desc(), kernel.untyped_data(), flipped,
                    c, o, f32, stream);
    dnnl::memory src({{n, c, h, w}, f32, tag::nhwc}, engine, x.untyped_data());
    dnnl::memory dst({{n, o, h, w}, f32, tag::nhwc}, engine, y->untyped_data());
    dnnl::memory blocked_src(conv->pd.src_desc(), engine,
                             Buffer(kSource, conv->pd.src_desc().get_size()));
    dnnl::memory blocked_dst(conv->pd.dst_desc(), engine,
                             Buffer(kDestination, conv->pd.dst_desc().get_size()));
    conv->src_in.execute(stream, src, blocked_src);
    conv->primitive.execute(stream, {{DNNL_ARG_SRC, blocked_src}, {DNNL_ARG_WEIGHTS, weights},
                                     {DNNL_ARG_DST, blocked_dst},
                                     {DNNL_ARG_SCRATCHPAD, Scratchpad(conv->pd.scratchpad_desc())}});
    conv->dst_out.execute(stream, blocked_dst, dst);
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("oneDNN: ") + e.what());
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JstyleConv3x3Bf16, Conv3x3Impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Ret<ffi::Buffer<ffi::BF16>>()
                                  .Attr<bool>("flipped"));

// Which instruction set oneDNN dispatches to on this CPU (e.g. "avx512_core_bf16"), for
// jstyle.onednn to tell a CPU with bfloat16 instructions from one that would emulate them.
extern "C" const char* JstyleConv3x3Impl() {
  static std::string info;
  try {
    info = ConvFor({1, 8, 8, 64, 64})->pd.impl_info_str();
  } catch (const dnnl::error& e) {
    info = std::string("error: ") + e.what();
  }
  return info.c_str();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(JstyleConv3x3F32Winograd, Conv3x3F32Impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("flipped"));

// The float32 Winograd implementation oneDNN has on this CPU ("jit_wino_4x3:avx512_core"),
// or "error: ..." where it has none (a CPU without AVX-512).
extern "C" const char* JstyleConv3x3WinogradImpl() {
  static std::string info;
  try {
    info = WinogradDesc({1, 96, 128, 64, 64}).impl_info_str();  // a first layer at 128 px
  } catch (const dnnl::error& e) {
    info = std::string("error: ") + e.what();
  }
  return info.c_str();
}

// Transforms the kernel of a Winograd convolution of shape (n, h, w, c, o) -- `kernel`
// (3, 3, c, o), or with `flipped` the (3, 3, o, c) kernel applied flipped and transposed --
// and keeps it, as the convolution's first call would: jstyle.onednn.prepare_winograd
// calls it ahead of a run, on a thread of its own, so that the run's first evaluation finds
// its kernels transformed. 0, or -1 where oneDNN failed (the call then transforms itself).
extern "C" int JstylePrepareWinograd(int64_t n, int64_t h, int64_t w, int64_t c, int64_t o,
                                     const float* kernel, int flipped) {
  try {
    auto conv = WinogradFor({n, h, w, c, o});
    std::lock_guard<std::mutex> turn(Turn());
    dnnl::stream stream(Engine());
    KeptWeights(conv->weights_in, conv->pd.weights_desc(), kernel, flipped != 0, c, o,
                dnnl::memory::data_type::f32, stream);
  } catch (const dnnl::error&) {
    return -1;
  }
  return 0;
}

// How many kernels the library has laid out so far (Winograd transforms and bfloat16
// reorders; kept ones found again do not count): what tells a prepared run from one that
// transformed on its first evaluation.
extern "C" int64_t JstyleKernelsLaidOut() { return laid_out.load(); }
