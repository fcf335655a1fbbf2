// coproc internals: a program that coproc::init() turns into something else: a spawned child
// (which runs its target and ends) or a forkserver (which serves until its creator is gone).
#pragma once

#include "core/private.hpp"

#include <sys/types.h>

#include <span>
#include <string>
#include <string_view>

namespace coproc::detail {

// argv[1] of a spawned child and of a forkserver: a program never sees them (init() does not
// return there).
inline constexpr std::string_view spawn_child_flag = "--coproc-spawn-child";
inline constexpr std::string_view forkserver_flag = "--coproc-forkserver";
// A spawned child's first descriptor handed by the parent (the start message); the others
// follow (start/spawn.cpp).
inline constexpr int exec_child_first_fd = 3;

// Called by init(): becomes what argv says, or records that init() ran and returns.
void init_program(int argc, char** argv);
// Throws std::logic_error unless init() has run: spawn and forkserver start this program
// again, and only init() makes it a child or a server instead of the program.
void require_init(std::string_view method);
// argv[0] as init() saw it (what `ps` shows for children and the server).
std::string program_name();

// Starts this program again with argv {program_name(), flag} and `sources` as its descriptors
// 3, 4, ... (all others above 2 closed). Returns its pid. Throws std::system_error (a failed
// exec included; it leaves no child behind).
pid_t spawn_self(std::string_view flag, std::span<const int> sources);

// The spawned child's main: reads the start message and runs the target. Never returns.
[[noreturn]] void spawned_child_main();

}  // namespace coproc::detail
