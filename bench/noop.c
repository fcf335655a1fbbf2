/* The no-op program that the exec-based anchors launch (raw posix_spawn, Boost.Process v2).
   Plain C, so what it costs is the exec, the dynamic loader and libc's start-up: the floor
   of any start that execs a program. */
int main(void) { return 0; }
