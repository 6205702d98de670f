# CMake toolchain file: cross-compile for 64-bit Windows with mingw-w64 on Linux.
#
#   cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=ci/mingw-w64.cmake \
#         -DWINDEPS=$PWD/build-windeps/prefix
#
# Compiler: Debian's x86_64-w64-mingw32-gcc (gcc 12, "win32" thread model, so
# nothing imports libwinpthread-1.dll unless it uses pthread.h).
# WINDEPS: prefix holding the Windows builds of APR and CMocka made by
# ci/build-win-deps.sh. Taken from the cache variable, else from the
# environment variable WINDEPS, else from PROCPOOL_WINDEPS.
# Tests run through wine (CMAKE_CROSSCOMPILING_EMULATOR); source
# ci/wine-env.sh before ctest for a quiet, headless, pre-booted prefix.

set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(MINGW_TRIPLET x86_64-w64-mingw32)
set(CMAKE_C_COMPILER   ${MINGW_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${MINGW_TRIPLET}-g++)
set(CMAKE_RC_COMPILER  ${MINGW_TRIPLET}-windres)

# Dependency prefix. The toolchain file is read again for every try_compile
# project; forward WINDEPS to those too.
if(NOT DEFINED WINDEPS OR "${WINDEPS}" STREQUAL "")
  if(DEFINED ENV{WINDEPS} AND NOT "$ENV{WINDEPS}" STREQUAL "")
    set(WINDEPS "$ENV{WINDEPS}")
  elseif(DEFINED ENV{PROCPOOL_WINDEPS} AND NOT "$ENV{PROCPOOL_WINDEPS}" STREQUAL "")
    set(WINDEPS "$ENV{PROCPOOL_WINDEPS}")
  endif()
  if(DEFINED WINDEPS)
    set(WINDEPS "${WINDEPS}" CACHE PATH "Prefix of the Windows dependency builds (APR, CMocka)")
  endif()
endif()
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES WINDEPS)

set(CMAKE_FIND_ROOT_PATH /usr/${MINGW_TRIPLET})
if(DEFINED WINDEPS AND NOT "${WINDEPS}" STREQUAL "")
  list(APPEND CMAKE_FIND_ROOT_PATH "${WINDEPS}")
endif()

# Host programs (wine, python, ...) from the host; libraries, headers and
# CMake packages only from the target roots.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Run target executables (tests, try_run) under wine. Debian 12's wine
# package provides /usr/bin/wine (a wrapper that runs wine64 for PE32+).
if(NOT CMAKE_CROSSCOMPILING_EMULATOR)
  find_program(MINGW_WINE_PROGRAM NAMES wine wine64
               PATHS /usr/bin /usr/lib/wine NO_CMAKE_FIND_ROOT_PATH)
  if(MINGW_WINE_PROGRAM)
    set(CMAKE_CROSSCOMPILING_EMULATOR "${MINGW_WINE_PROGRAM}")
  endif()
endif()

# No libgcc_s_seh-1.dll / libstdc++-6.dll at run time.
set(CMAKE_EXE_LINKER_FLAGS_INIT    "-static-libgcc -static-libstdc++")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static-libgcc -static-libstdc++")
set(CMAKE_MODULE_LINKER_FLAGS_INIT "-static-libgcc -static-libstdc++")
