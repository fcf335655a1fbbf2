// coproc internals: the headers under lib/ are the library's own; a program never sees them.
#pragma once

#ifndef COPROC_BUILDING
#error "lib/ headers are private to the coproc library"
#endif
