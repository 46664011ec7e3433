# Layering the build enforces.
#
# A library does not see the source root. Its own headers are staged (symlinked) into
# build/include/<target>/<path as in the source tree>, and that folder is its PUBLIC
# include path. So a library sees exactly its own headers and those of the libraries it
# links, transitively: an #include "vmm/vsock.hpp" in a library that does not link
# causeway_vmm fails to compile, even though vsock.hpp is header-only. A header-only
# dependency therefore always shows in target_link_libraries.
#
# Every header belongs to exactly one library: the header next to each of its .cpp
# sources, plus the header-only ones named with HEADERS. causeway_check_header_owners()
# fails the configure step when a header under a library folder has no owner (it could
# then be included by nobody, or by anything through the source root).
#
# Which library may link which is the other half: scripts/check-layering.py reads the
# layer table (docs/ARCHITECTURE.md, "Layers") and fails on an #include or a link that
# points up. CI runs it.

set(CAUSEWAY_STAGE_ROOT "${CMAKE_BINARY_DIR}/include")

# causeway_stage_headers(<target> [HEADERS <header>...])
function(causeway_stage_headers target)
  cmake_parse_arguments(ARG "" "" "HEADERS" ${ARGN})
  set(stage "${CAUSEWAY_STAGE_ROOT}/${target}")
  file(REMOVE_RECURSE "${stage}")
  get_target_property(type ${target} TYPE)
  set(sources "")
  if(NOT type STREQUAL "INTERFACE_LIBRARY")
    get_target_property(sources ${target} SOURCES)
  endif()
  set(headers "")
  foreach(src IN LISTS sources)
    get_filename_component(abs "${src}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    string(REGEX REPLACE "\\.cpp$" ".hpp" hdr "${abs}")
    if(NOT hdr STREQUAL abs AND EXISTS "${hdr}")
      list(APPEND headers "${hdr}")
    endif()
  endforeach()
  foreach(h IN LISTS ARG_HEADERS)
    get_filename_component(abs "${h}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    if(NOT EXISTS "${abs}")
      message(FATAL_ERROR "causeway_stage_headers(${target}): no header ${abs}")
    endif()
    list(APPEND headers "${abs}")
  endforeach()
  foreach(abs IN LISTS headers)
    file(RELATIVE_PATH rel "${CMAKE_SOURCE_DIR}" "${abs}")
    get_filename_component(dir "${stage}/${rel}" DIRECTORY)
    file(MAKE_DIRECTORY "${dir}")
    file(CREATE_LINK "${abs}" "${stage}/${rel}" SYMBOLIC)
    set_property(GLOBAL APPEND PROPERTY CAUSEWAY_OWNED_HEADERS "${rel}")
    set_property(GLOBAL APPEND PROPERTY CAUSEWAY_HEADER_OWNERS "${rel}=${target}")
  endforeach()
  if(type STREQUAL "INTERFACE_LIBRARY")
    target_include_directories(${target} INTERFACE "${stage}")
  else()
    target_include_directories(${target} PUBLIC "${stage}")
  endif()
  set_property(GLOBAL APPEND PROPERTY CAUSEWAY_LAYERED_TARGETS "${target}")
endfunction()

# Writes build/layering.json: each staged library and the libraries it links, for
# scripts/check-layering.py (which finds a library's folder from its staged headers).
function(causeway_write_link_graph)
  get_property(targets GLOBAL PROPERTY CAUSEWAY_LAYERED_TARGETS)
  set(entries "")
  foreach(t IN LISTS targets)
    get_target_property(type ${t} TYPE)
    if(type STREQUAL "INTERFACE_LIBRARY")
      get_target_property(links ${t} INTERFACE_LINK_LIBRARIES)
    else()
      get_target_property(links ${t} LINK_LIBRARIES)
    endif()
    set(names "")
    foreach(l IN LISTS links)
      if(TARGET "${l}" AND l MATCHES "^causeway_" AND NOT l STREQUAL "causeway_warnings")
        list(APPEND names "\"${l}\"")
      endif()
    endforeach()
    list(JOIN names ", " names)
    list(APPEND entries "  \"${t}\": [${names}]")
  endforeach()
  list(JOIN entries ",\n" body)
  file(WRITE "${CMAKE_BINARY_DIR}/layering.json" "{\n${body}\n}\n")
endfunction()

# causeway_check_header_owners(<folder>...): every .hpp under these folders (recursively)
# is staged by exactly one library.
function(causeway_check_header_owners)
  get_property(owned GLOBAL PROPERTY CAUSEWAY_OWNED_HEADERS)
  get_property(owners GLOBAL PROPERTY CAUSEWAY_HEADER_OWNERS)
  set(problems "")
  foreach(folder IN LISTS ARGN)
    file(GLOB_RECURSE headers CONFIGURE_DEPENDS RELATIVE "${CMAKE_SOURCE_DIR}" "${CMAKE_SOURCE_DIR}/${folder}/*.hpp")
    foreach(h IN LISTS headers)
      set(mine "${owners}")
      list(FILTER mine INCLUDE REGEX "^${h}=")
      list(LENGTH mine n)
      if(n EQUAL 0)
        string(APPEND problems "\n  ${h}: no library stages it (add it to HEADERS of the library it belongs to)")
      elseif(n GREATER 1)
        string(APPEND problems "\n  ${h}: staged by more than one library: ${mine}")
      endif()
    endforeach()
  endforeach()
  if(problems)
    message(FATAL_ERROR "Header ownership (cmake/Layering.cmake):${problems}")
  endif()
endfunction()
