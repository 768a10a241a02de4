@echo off
rem install.cmd - installs the gate driver @VERSION@ from this folder.
rem
rem   install.cmd [/auto] [Name=Value ...]
rem
rem Name=Value pairs are registry values of the driver's Parameters key
rem (see README.md, "Configuration"); values not given take the driver's
rem defaults. /auto makes the service start at boot (default: on demand).
rem Run from an elevated prompt. Every step is checked; on a failure the
rem script says what failed and removes what it had done (uninstall.cmd
rem /rollback), so nothing is left half-installed.
setlocal EnableExtensions EnableDelayedExpansion

set "SERVICE=gate"
set "HERE=%~dp0"
set "DRIVERS=%SystemRoot%\System32\drivers"
set "SYS=%DRIVERS%\gate.sys"
set "APPDIR=%ProgramFiles%\gate"
set "SVCKEY=HKLM\SYSTEM\CurrentControlSet\Services\%SERVICE%"
set "PARAMS=%SVCKEY%\Parameters"
set "LOGKEY=HKLM\SYSTEM\CurrentControlSet\Services\EventLog\System\%SERVICE%"
set "START=demand"
set "NVALUES=0"

rem ---- registry value names and types (generated from the driver's table)
@VALUE_TYPES@

rem ---- arguments: check them all before changing anything
rem (Written for Windows' cmd and Wine's: no findstr, no "||", no
rem !var_%%i! or !var:x=y! inside loops; see package/README note.)
:args
if "%~1"=="" goto args_done
set "ARG=%~1"
if /i "%ARG%"=="/auto" (
    set "START=auto"
    shift
    goto args
)
if /i "%ARG%"=="/?" goto help
if /i "%ARG%"=="/help" goto help
set "NAME="
set "VALUE="
for /f "tokens=1,* delims==" %%a in ("%ARG%") do (
    set "NAME=%%a"
    set "VALUE=%%b"
)
if "%NAME%"=="" (
    echo install.cmd: "%ARG%" is not Name=Value.
    goto usage_error
)
rem cmd splits unquoted arguments at "=": ListenPort=8443 arrives as two.
if "%VALUE%"=="" if not "%~2"=="" (
    set "VALUE=%~2"
    shift
)
set "TYPE=!T_%NAME%!"
set "CANON=!N_%NAME%!"
if "%TYPE%"=="" (
    echo install.cmd: unknown registry value "%NAME%". Known values: %NAMES%
    goto usage_error
)
if "%VALUE%"=="" (
    echo install.cmd: %CANON% has no value ^(write %CANON%=value^).
    goto usage_error
)
set "NUMERIC=0"
if "%TYPE%"=="REG_DWORD" set "NUMERIC=1"
if "%TYPE%"=="REG_QWORD" set "NUMERIC=1"
set "IS_NUMBER=1"
if "%NUMERIC%"=="1" call :is_number "%VALUE%"
if not "%IS_NUMBER%"=="1" (
    echo install.cmd: %CANON%=%VALUE% is not a decimal number ^(%CANON% is %TYPE%^).
    goto usage_error
)
set /a NVALUES+=1
set "V_NAME_%NVALUES%=%CANON%"
set "V_TYPE_%NVALUES%=%TYPE%"
set "V_DATA_%NVALUES%=%VALUE%"
shift
goto args
:args_done

rem ---- preconditions
call :step "checking for administrator rights"
reg add "HKLM\SOFTWARE\gate-install-probe" /f >nul 2>&1
if errorlevel 1 (
    call :fail "this needs an elevated prompt: Run as administrator" norollback
    exit /b 5
)
reg delete "HKLM\SOFTWARE\gate-install-probe" /f >nul 2>&1

call :step "checking the package files in %HERE%"
for %%f in (gate.sys gate.man uninstall.cmd) do (
    if not exist "%HERE%%%f" (
        call :fail "%%f is missing from %HERE%" norollback
        exit /b 2
    )
)
set "HAVE_CTL=0"
if exist "%HERE%gatectl.exe" set "HAVE_CTL=1"

call :step "checking that %SERVICE% is not installed already"
sc query %SERVICE% >nul 2>&1
if not errorlevel 1 (
    call :fail "a service named %SERVICE% exists already; run uninstall.cmd first" norollback
    exit /b 3
)
if exist "%SYS%" (
    call :fail "%SYS% exists already; run uninstall.cmd first" norollback
    exit /b 3
)

rem ---- from here on, a failure rolls everything back
call :step "copying gate.sys to %DRIVERS%"
copy /y "%HERE%gate.sys" "%SYS%" >nul
if errorlevel 1 goto failed
if not exist "%SYS%" goto failed

call :step "copying gate.man, uninstall.cmd and the tools to %APPDIR%"
if not exist "%APPDIR%" mkdir "%APPDIR%"
if not exist "%APPDIR%" goto failed
for %%f in (gate.man uninstall.cmd README.md gate.wprp gate.wpaProfile gatectl.exe) do (
    if exist "%HERE%%%f" (
        copy /y "%HERE%%%f" "%APPDIR%\%%f" >nul
        if errorlevel 1 goto failed
    )
)

call :step "creating the kernel service %SERVICE%, start= %START%"
sc create %SERVICE% type= kernel start= %START% error= normal binPath= "%SYS%" DisplayName= "gate anti-DoS TCP front gate" >nul
if errorlevel 1 goto failed
sc query %SERVICE% >nul 2>&1
if errorlevel 1 goto failed

call :step "writing %NVALUES% Parameters value(s) to %PARAMS%"
set "WRITE_FAILED=0"
for /l %%i in (1,1,%NVALUES%) do call :write_value %%i
if not "%WRITE_FAILED%"=="0" goto failed

call :step "registering the System log source %SERVICE%, message table in gate.sys"
reg add "%LOGKEY%" /v EventMessageFile /t REG_EXPAND_SZ /d "%%SystemRoot%%\System32\IoLogMsg.dll;%%SystemRoot%%\System32\drivers\gate.sys" /f >nul
if errorlevel 1 goto failed
reg add "%LOGKEY%" /v TypesSupported /t REG_DWORD /d 7 /f >nul
if errorlevel 1 goto failed

call :step "registering the ETW manifest: wevtutil im"
wevtutil im "%APPDIR%\gate.man" /rf:"%SYS%" /mf:"%SYS%"
if errorlevel 1 goto failed

call :step "starting %SERVICE%"
sc start %SERVICE% >nul
if errorlevel 1 (
    echo install.cmd: the driver refused to start. Its reason, from the System log:
    wevtutil qe System /q:"*[System[Provider[@Name='%SERVICE%']]]" /c:1 /rd:true /f:text
    echo install.cmd: ^(also: Event Viewer, Windows Logs ^> System, source %SERVICE%; or the
    echo TcpFrontGate/Admin log^). Fix the value and run install.cmd again.
    goto failed
)
call :wait_running
if errorlevel 1 goto failed

if "%HAVE_CTL%"=="1" (
    call :step "gatectl status"
    "%APPDIR%\gatectl.exe" status
    if errorlevel 1 goto failed
) else (
    echo install.cmd: gatectl.exe is not in this package; skipping "gatectl status".
    sc query %SERVICE%
)
echo install.cmd: %SERVICE% @VERSION@ is installed and running.
exit /b 0

rem ---- helpers
:write_value
set "I=%~1"
set "WN=!V_NAME_%I%!"
set "WT=!V_TYPE_%I%!"
set "WD=!V_DATA_%I%!"
echo install.cmd:   %WN% = %WD% (%WT%)
reg add "%PARAMS%" /v "%WN%" /t %WT% /d "%WD%" /f >nul
if errorlevel 1 set "WRITE_FAILED=1"
exit /b 0

:is_number
rem IS_NUMBER=1 when %1 is only decimal digits.
set "IS_NUMBER=0"
set "R=x%~1"
set "R=%R:0=%"
set "R=%R:1=%"
set "R=%R:2=%"
set "R=%R:3=%"
set "R=%R:4=%"
set "R=%R:5=%"
set "R=%R:6=%"
set "R=%R:7=%"
set "R=%R:8=%"
set "R=%R:9=%"
if "%R%"=="x" set "IS_NUMBER=1"
exit /b 0

:step
echo install.cmd: %~1
exit /b 0

:wait_running
rem Up to ~10 s for STATE RUNNING.
for /l %%n in (1,1,20) do (
    sc query %SERVICE% | find "RUNNING" >nul
    if not errorlevel 1 exit /b 0
    ping -n 2 127.0.0.1 >nul
)
echo install.cmd: %SERVICE% did not reach RUNNING within 10 s.
exit /b 1

:fail
echo install.cmd: FAILED: %~1
if "%~2"=="norollback" echo install.cmd: nothing was changed.
exit /b 0

:failed
echo install.cmd: FAILED at the step above; removing what was installed.
call "%HERE%uninstall.cmd" /rollback
exit /b 1

:help
call :usage
exit /b 0

:usage_error
echo install.cmd: nothing was changed.
call :usage
exit /b 2

:usage
echo usage: install.cmd [/auto] [Name=Value ...]
echo   Name is a registry value of the driver's Parameters key: %NAMES%
echo   e.g. install.cmd ListenPort=8443 RateMilliPerSecond=5000 "DenyList=203.0.113.0/24\0198.51.100.7"
exit /b 0
