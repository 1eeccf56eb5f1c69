// The whole explainer document, section by section, in its order: README command 1 runs this.
// Each section is the walkthrough program of the same name (walkthroughs/NN_*.cpp), included here
// without its main().
#define DSR1_WALKTHROUGH_NO_MAIN
#include "walkthroughs/01_rmsnorm.cpp"
#include "walkthroughs/02_attention.cpp"
#include "walkthroughs/03_residual.cpp"
#include "walkthroughs/04_moe_ffn.cpp"
#include "walkthroughs/05_router.cpp"
#include "walkthroughs/06_expert_aggregator.cpp"
#include "walkthroughs/07_kv_cache.cpp"
#include "walkthroughs/08_latent_compression.cpp"

int main(int argc, char** argv) {
  using namespace dsr1::walk;
  return run(argc, argv, "document",
             "The explainer document's worked examples, every section in order, step by step",
             {walk_rmsnorm, walk_attention, walk_residual, walk_moe_ffn, walk_router,
              walk_expert_aggregator, walk_kv_cache, walk_latent_compression});
}
