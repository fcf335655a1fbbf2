// The smallest program of a project that uses coproc as a subproject.
#include <coproc/coproc.hpp>

int main() {
  coproc::process p([] { coproc::exit(7); });
  p.start();
  return p.join() == 7 ? 0 : 1;
}
