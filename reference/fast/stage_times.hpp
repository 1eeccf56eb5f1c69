// Wall time of a forward pass split by stage, for `dsr1 bench` (docs/fast-path.md "Where the
// time goes"): Options::times points at one, and the fast path adds each stage's seconds to it.
// Leaves out: anything numeric (timing never changes a result).
//
// The stages do not overlap, so their sum is the pass's time but for the embedding and the
// residual additions:
//   attention_projections  W_x, W_q, the per-head W_UK_h^T and W_UV_h, W_O, the q/kv RMSNorms, RoPE
//   attention_core         scores, softmax and z = P C over the cached keys (mla.cpp step 5)
//   norms                  the RMSNorms before attention, before the FFN and at the end
//   dense_ffn              the dense layers' SwiGLU FFN
//   router                 the MoE router (scores, groups, top-k)
//   experts                the routed experts' products on their gathered tokens, and the shared expert
//   combine                the gate-weighted sum of the routed experts' outputs
//   head                   the LM head
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace dsr1::fast {

struct StageTimes {
  std::map<std::string, double> seconds;  // stage -> seconds, accumulated over passes
};

// Adds the time from construction to destruction to times->seconds[stage] (nothing if null).
class StageTimer {
 public:
  StageTimer(StageTimes* times, const char* stage)
      : times_(times), stage_(stage), start_(times ? std::chrono::steady_clock::now()
                                                   : std::chrono::steady_clock::time_point{}) {}
  ~StageTimer() { stop(); }
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;
  // Stops early (once); returns the seconds it added.
  double stop() {
    if (!times_) return 0.0;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    times_->seconds[stage_] += s;
    times_ = nullptr;
    return s;
  }

 private:
  StageTimes* times_;
  const char* stage_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace dsr1::fast
