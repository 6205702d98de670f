# version.cmake - asks an installed procpoolConfigVersion.cmake what
# find_package(procpool <WANT> CONFIG) would: prints "WANT: compatible" or
# "WANT: refused".
#   cmake -DFILE=<prefix>/lib/cmake/procpool/procpoolConfigVersion.cmake
#         -DWANT=0.2 -P version.cmake
set(PACKAGE_FIND_VERSION ${WANT})
string(REPLACE "." ";" parts "${WANT}.0.0")
list(GET parts 0 PACKAGE_FIND_VERSION_MAJOR)
list(GET parts 1 PACKAGE_FIND_VERSION_MINOR)
list(GET parts 2 PACKAGE_FIND_VERSION_PATCH)
set(PACKAGE_FIND_VERSION_RANGE FALSE)
include("${FILE}")
if(PACKAGE_VERSION_COMPATIBLE)
  message("${WANT}: compatible")
else()
  message("${WANT}: refused")
endif()
